from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory

from knowledge.models import IngestionJob, KnowledgeSource, SuggestionFeedback
from knowledge.panels import suggestions_panel_context
from knowledge.parsing import parse_jsonl
from knowledge.services import documents_ingest, source_get_or_create
from tickets.panels import panels_for
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db

ARTICLES = [
    {
        "id": "reset",
        "title": "How do I reset my password?",
        "text": "Click 'Forgot password' on the sign-in page; we email you a link.",
        "url": "https://help.test/reset",
        "tags": ["account"],
    },
    {
        "id": "refund",
        "title": "When will I get my refund?",
        "text": "Refunds reach your card within 5 business days.",
        "url": "https://help.test/refund",
        "tags": ["billing"],
    },
]


@pytest.fixture
def kb():
    source = source_get_or_create(name="help")
    documents_ingest(source=source, items=parse_jsonl("\n".join(json.dumps(a) for a in ARTICLES)))
    return source


@pytest.fixture
def ticket(customer):
    return ticket_create(
        customer=customer,
        subject="Can't log in",
        body="I forgot my password and can't sign in, how can I change it?",
    )


def test_search_returns_documents_chunks_scores_and_snippets(agent_client, kb):
    response = agent_client.get("/api/kb/search", {"q": "refund card", "k": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "refund card"
    [result] = body["results"]
    assert result["document"]["external_id"] == "refund"
    assert result["document"]["url"] == "https://help.test/refund"
    assert result["document"]["source"] == "help"
    assert result["chunk"]["text"] == "Refunds reach your card within 5 business days."
    assert "<mark>Refunds</mark>" in result["snippet"]
    assert result["score"] > 0
    filtered = agent_client.get("/api/kb/search", {"q": "refund", "tag": "account"}).json()
    assert [r["document"]["external_id"] for r in filtered["results"]] == ["reset"]


def test_search_filtered_to_sources_by_name(agent_client, kb):
    other = source_get_or_create(name="other")
    documents_ingest(
        source=other,
        items=parse_jsonl(
            json.dumps({"id": "o", "title": "Refunds elsewhere", "text": "Refunds."})
        ),
    )

    def ids(source: str) -> list[str]:
        response = agent_client.get("/api/kb/search", {"q": "refund", "source": source})
        assert response.status_code == 200
        return sorted(r["document"]["external_id"] for r in response.json()["results"])

    help_ids = ids("help")
    assert "o" not in help_ids
    assert "refund" in help_ids
    assert ids("other") == ["o"]
    assert ids("no-such-source") == []  # an unknown name: nothing, not everything


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "q: a search query is required"), ({"q": "x", "k": "0"}, "k: must be between")],
)
def test_search_validates(agent_client, params, message):
    response = agent_client.get("/api/kb/search", params)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


def test_search_needs_an_agent(api_client, outsider):
    assert api_client.get("/api/kb/search", {"q": "x"}).status_code in (401, 403)
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/kb/search", {"q": "x"}).status_code == 403


def test_sync_is_for_supervisors_and_runs_a_job(
    supervisor_client, agent_client, tmp_path: Path, django_capture_on_commit_callbacks
):
    (tmp_path / "a.md").write_text("# A\nalpha")
    KnowledgeSource.objects.create(name="folder", kind="folder", path=str(tmp_path))
    assert agent_client.post("/api/kb/sync", {}, format="json").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = supervisor_client.post("/api/kb/sync", {"source": "folder"}, format="json")
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert response.json() == {"job_id": job_id, "status": "queued"}
    job = agent_client.get(f"/api/kb/jobs/{job_id}").json()
    assert (job["status"], job["source"], job["progress"], job["counts"]) == (
        "succeeded",
        "folder",
        1.0,
        {"created": 1, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0, "chunks": 2},
    )
    assert agent_client.get("/api/kb/jobs/999999").status_code == 404
    missing = supervisor_client.post("/api/kb/sync", {"source": "nope"}, format="json")
    assert missing.status_code == 404
    assert IngestionJob.objects.count() == 1


def test_ticket_suggestions(agent_client, kb, ticket, settings):
    response = agent_client.get(f"/api/tickets/{ticket.pk}/suggestions")
    assert response.status_code == 200
    suggestions = response.json()["suggestions"]
    assert suggestions[0]["document"]["external_id"] == "reset"
    settings.KB_SUGGESTION_MIN_SCORE = 0.99
    assert agent_client.get(f"/api/tickets/{ticket.pk}/suggestions").json()["suggestions"] == []
    assert agent_client.get("/api/tickets/T-999999/suggestions").status_code == 404


def test_feedback_is_stored_once_per_agent_and_shown_to_supervisors(
    agent_client, supervisor_client, kb, ticket, agent
):
    chunk_id = agent_client.get(f"/api/tickets/{ticket.pk}/suggestions").json()["suggestions"][0][
        "chunk"
    ]["id"]
    url = f"/api/tickets/{ticket.pk}/suggestions/{chunk_id}/feedback"
    first = agent_client.post(url, {"helpful": True}, format="json")
    assert first.status_code == 201
    again = agent_client.post(url, {"helpful": False, "comment": "outdated"}, format="json")
    assert again.json() == {
        "id": first.json()["id"],
        "ticket": ticket.pk,
        "chunk_id": str(chunk_id),
        "helpful": False,
    }
    feedback = SuggestionFeedback.objects.get()
    assert feedback.document is not None
    assert (feedback.user, feedback.helpful, feedback.comment, feedback.document.external_id) == (
        agent,
        False,
        "outdated",
        "reset",
    )
    assert agent_client.post(url, {}, format="json").status_code == 400
    bad = agent_client.post(
        f"/api/tickets/{ticket.pk}/suggestions/99999999/feedback", {"helpful": True}, format="json"
    )
    assert bad.status_code == 404
    assert agent_client.get("/api/kb/feedback").status_code == 403
    summary = supervisor_client.get("/api/kb/feedback").json()
    assert summary["documents"] == [
        {
            "document_id": feedback.document_id,
            "document__title": "How do I reset my password?",
            "helpful_count": 0,
            "not_helpful_count": 1,
        }
    ]
    assert [(e["user"], e["helpful"], e["comment"]) for e in summary["entries"]] == [
        ("agent", False, "outdated")
    ]


def test_panel_is_registered_and_renders_insert_buttons(kb, ticket, agent):
    assert "kb-suggestions" in [p.name for p in panels_for("knowledge")]
    request = RequestFactory().get("/")
    request.user = agent
    context = suggestions_panel_context(request, ticket)
    assert context is not None
    html = render_to_string("knowledge/suggestions_panel.html", context)
    top = context["suggestions"][0]
    assert top["insert_text"] == (
        "Click 'Forgot password' on the sign-in page; we email you a link.\n"
        "How do I reset my password?: https://help.test/reset"
    )
    assert 'data-insert-text="Click &#x27;Forgot password&#x27; on the sign-in page' in html
    assert (
        f'data-feedback-url="/api/tickets/{ticket.pk}/suggestions/{top["chunk"]["id"]}/feedback"'
        in html
    )


def test_suggestions_show_and_insert_the_answer_not_the_example_phrasings(
    customer, agent, agent_client, db
):
    """An article may list how customers ask its question (it helps search find it): the
    snippet and the inserted text leave that out; the API's passage text keeps it."""
    article = {
        "id": "late",
        "title": "Where is my parcel?",
        "text": "Parcels arrive within 3 working days; track yours under My orders.\n\n"
        "Customers ask this as, for example: wheres my parcel; parcel not here yet",
    }
    documents_ingest(
        source=source_get_or_create(name="help"), items=parse_jsonl(json.dumps(article))
    )
    ticket = ticket_create(
        customer=customer, subject="wheres my parcel", body="parcel not here yet"
    )
    request = RequestFactory().get("/")
    request.user = agent
    context = suggestions_panel_context(request, ticket)
    assert context is not None
    top = context["suggestions"][0]
    assert top["document"]["external_id"] == "late"
    assert top["insert_text"] == (
        "Parcels arrive within 3 working days; track yours under My orders."
    )
    assert "parcel not here" not in str(top["snippet_html"])
    assert "arrive within 3 working days" in str(top["snippet_html"])
    found = agent_client.get("/api/kb/search", {"q": "wheres my parcel"}).json()["results"][0]
    assert "Customers ask this as" in found["chunk"]["text"]
    assert "Customers ask this as" not in found["snippet"]


def test_upload_ingests_one_file_idempotently(supervisor_client, agent_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(name: str, data: bytes):
        return supervisor_client.post(
            "/api/kb/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart"
        )

    first = upload("returns.md", b"# Returns\nWithin 30 days.")
    assert (first.status_code, first.json()["created"], first.json()["source"]) == (
        201,
        1,
        "uploads",
    )
    assert upload("returns.md", b"# Returns\nWithin 30 days.").json()["unchanged"] == 1
    assert upload("returns.md", b"# Returns\nWithin 60 days.").json()["updated"] == 1
    bad = upload("scan.pdf", b"%PDF-1.4 junk")
    assert (bad.status_code, bad.json()["failed"]) == (400, 1)
    assert upload("photo.png", b"\x89PNG").status_code == 400
    assert agent_client.post("/api/kb/documents", {}, format="multipart").status_code == 403
    source = KnowledgeSource.objects.get(name="uploads")
    assert source.kind == "upload"
    assert sorted(source.documents.values_list("external_id", "status", "version")) == [
        ("returns.md", "active", 2),
        ("scan.pdf", "failed", 0),
    ]


def test_a_broken_reupload_keeps_the_previous_version_searchable(
    supervisor_client, agent_client, superuser
):
    """Replacing a document by a file that cannot be read used to take the good version
    out of search; the failure is still answered, recorded and shown."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from knowledge.models import Document

    good = b"# Returns\nReturn any item within 30 days for a full refund."

    def upload(data: bytes):
        return supervisor_client.post(
            "/api/kb/documents", {"file": SimpleUploadedFile("returns.md", data)}
        )

    def found() -> list[str]:
        results = agent_client.get("/api/kb/search", {"q": "return an item refund"}).json()
        return [r["chunk"]["text"] for r in results["results"]]

    assert upload(good).status_code == 201
    assert found() == ["Return any item within 30 days for a full refund."]
    broken = upload(b"%PDF-1.4 exported as Markdown by mistake")
    assert broken.status_code == 400
    assert broken.json() == {
        "source": "uploads",
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 1,
        "chunks": 0,
        "errors": [
            {
                "id": "returns.md",
                "error": "returns.md: a PDF file, not text (name it .pdf) "
                "(version 1 stays in search)",
            }
        ],
    }
    assert found() == ["Return any item within 30 days for a full refund."]
    document = Document.objects.get(external_id="returns.md")
    assert (document.status, document.version, document.error) == (
        "active",
        1,
        "returns.md: a PDF file, not text (name it .pdf)",
    )
    admin = Client()
    admin.force_login(superuser)
    listed = admin.get("/admin/knowledge/document/", {"read_failed": "yes"}).content.decode()
    assert "returns.md: a PDF file, not text (name it .pdf)" in listed

    assert upload(good).json()["unchanged"] == 1  # the good file again clears the failure
    document.refresh_from_db()
    assert (document.status, document.version, document.error) == ("active", 1, "")
    listed = admin.get("/admin/knowledge/document/", {"read_failed": "yes"}).content.decode()
    assert "returns.md" not in listed


def test_a_sync_the_broker_cannot_take_is_a_failed_job_not_a_stuck_one(
    supervisor_client, agent_client, tmp_path: Path, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from knowledge.tasks import kb_sync_task

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(kb_sync_task, "delay", broker_down)
    KnowledgeSource.objects.create(name="folder", kind="folder", path=str(tmp_path))
    with django_capture_on_commit_callbacks(execute=True):
        response = supervisor_client.post("/api/kb/sync", {"source": "folder"}, format="json")
    assert response.status_code == 202
    job = agent_client.get(f"/api/kb/jobs/{response.json()['job_id']}").json()
    assert job["status"] == "failed"
    assert job["errors"] == [
        {
            "id": "",
            "error": "not queued: the task broker refused it (OperationalError); "
            "start the sync again",
        }
    ]


def test_a_deleted_article_leaves_the_cached_suggestions_at_once(
    agent_client, kb, ticket, django_capture_on_commit_callbacks
):
    """Suggestions are cached per ticket state for 5 minutes; an article removed (a wrong
    or confidential upload, an S3 deletion) was still shown, text and all, until then."""
    from knowledge.services import document_delete

    def shown() -> list[str]:
        response = agent_client.get(f"/api/tickets/{ticket.pk}/suggestions")
        return [s["document"]["external_id"] for s in response.json()["suggestions"]]

    assert shown()[0] == "reset"
    with django_capture_on_commit_callbacks(execute=True):
        assert document_delete(source=kb, external_id="reset")
    assert "reset" not in shown()
