"""The knowledge base's records in the admin: shown to supervisors and superusers, never
added, edited or deleted by hand (the ingestion writes them)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from knowledge.models import Document, IngestionJob, KnowledgeSource, ObjectEvent

pytestmark = pytest.mark.django_db

RECORDS = ("document", "ingestionjob", "objectevent", "suggestionfeedback")


@pytest.mark.parametrize("who", ["supervisor", "superuser"])
@pytest.mark.parametrize("model", RECORDS)
def test_records_cannot_be_added_by_hand(request: Any, who: str, model: str) -> None:
    browser = Client()
    browser.force_login(request.getfixturevalue(who))
    assert browser.get(f"/admin/knowledge/{model}/add/").status_code == 403
    index = browser.get("/admin/knowledge/").content.decode()
    assert f'href="/admin/knowledge/{model}/add/"' not in index


def test_a_received_event_key_cannot_be_forged_or_edited(superuser: Any) -> None:
    """A hand-made event key would make the real S3 event look like a redelivery."""
    browser = Client()
    browser.force_login(superuser)
    form = {"event_key": "bucket/key#1", "via": "http", "bucket": "b", "key": "k"}
    assert browser.post("/admin/knowledge/objectevent/add/", form).status_code == 403
    assert not ObjectEvent.objects.exists()

    event = ObjectEvent.objects.create(event_key="real", via="sqs", bucket="b", key="k")
    page = browser.get(f"/admin/knowledge/objectevent/{event.pk}/change/")
    assert page.status_code == 200  # shown, read-only
    browser.post(f"/admin/knowledge/objectevent/{event.pk}/change/", {**form, "key": "x"})
    event.refresh_from_db()
    assert (event.event_key, event.key) == ("real", "k")


def test_when_a_sync_listed_a_source_is_not_set_by_hand(superuser: Any) -> None:
    """``listed_at`` closes the S3 events received before it (settled by that sync): set
    by hand to a later date, it would close real events unapplied."""
    source = KnowledgeSource.objects.create(name="docs", kind="s3", bucket="b", prefix="p/")
    browser = Client()
    browser.force_login(superuser)
    page = browser.get(f"/admin/knowledge/knowledgesource/{source.pk}/change/").content.decode()
    assert 'name="listed_at' not in page
    form = {"name": "docs", "kind": "s3", "bucket": "b", "prefix": "p/", "tags": "[]"}
    response = browser.post(
        f"/admin/knowledge/knowledgesource/{source.pk}/change/",
        {**form, "listed_at_0": "2099-01-01", "listed_at_1": "00:00:00"},
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.listed_at is None


def test_documents_are_not_deleted_behind_their_chunks(superuser: Any) -> None:
    source = KnowledgeSource.objects.create(name="faq")
    document = Document.objects.create(source=source, external_id="a", title="A")
    job = IngestionJob.objects.create(source=source)
    browser = Client()
    browser.force_login(superuser)
    assert browser.get(f"/admin/knowledge/document/{document.pk}/delete/").status_code == 403
    assert browser.get(f"/admin/knowledge/ingestionjob/{job.pk}/change/").status_code == 200
    assert Document.objects.filter(pk=document.pk).exists()


def test_supervisors_see_the_knowledge_base_and_change_none_of_it(
    supervisor: Any, superuser: Any, agent: Any
) -> None:
    """Supervisors run syncs and uploads and read feedback (docs/knowledge.md): they open
    documents, sources, jobs and feedback in the admin (403 before) but add and edit none
    of them. A source's folder or bucket says what the server reads into the knowledge base
    that agents and the model then quote: set by an operator (a superuser), else a
    supervisor could point a folder source at the server's own files."""
    from django.contrib.auth.models import Permission

    from knowledge.models import SuggestionFeedback
    from tickets.models import Customer
    from tickets.services import ticket_create

    source = KnowledgeSource.objects.create(name="faq", kind="folder", path="/srv/kb/faq")
    document = Document.objects.create(source=source, external_id="a.md", title="A")
    job = IngestionJob.objects.create(source=source)
    ticket = ticket_create(customer=Customer.objects.create(name="C"), subject="S", body="B")
    feedback = SuggestionFeedback.objects.create(
        ticket=ticket, chunk_ref="1", document=document, helpful=True, user=supervisor
    )
    browser = Client()
    browser.force_login(supervisor)
    for model, obj in (
        ("knowledgesource", source),
        ("document", document),
        ("ingestionjob", job),
        ("suggestionfeedback", feedback),
    ):
        assert browser.get(f"/admin/knowledge/{model}/").status_code == 200, model
        page = browser.get(f"/admin/knowledge/{model}/{obj.pk}/change/")
        assert page.status_code == 200, model
        assert 'name="_save"' not in page.content.decode(), model
        assert browser.get(f"/admin/knowledge/{model}/add/").status_code == 403, model
        assert browser.get(f"/admin/knowledge/{model}/{obj.pk}/delete/").status_code == 403
    form = {"name": "faq", "kind": "folder", "path": "/etc", "tags": "[]"}
    assert (
        browser.post(f"/admin/knowledge/knowledgesource/{source.pk}/change/", form).status_code
        == 403
    )
    assert browser.post("/admin/knowledge/knowledgesource/add/", form).status_code == 403
    source.refresh_from_db()
    assert source.path == "/srv/kb/faq"
    assert list(KnowledgeSource.objects.values_list("name", flat=True)) == ["faq"]
    # received S3 events: shown (to re-drive a failed one), never edited
    assert browser.get("/admin/knowledge/objectevent/").status_code == 200

    # A superuser still sets sources up.
    browser.force_login(superuser)
    assert (
        browser.post(
            "/admin/knowledge/knowledgesource/add/", {**form, "name": "manuals"}
        ).status_code
        == 302
    )
    assert KnowledgeSource.objects.get(name="manuals").path == "/etc"

    # A staff agent with view permissions sees what they were given, changes nothing.
    type(agent).objects.filter(pk=agent.pk).update(is_staff=True)
    agent.user_permissions.add(Permission.objects.get(codename="view_knowledgesource"))
    browser.force_login(agent)
    assert browser.get(f"/admin/knowledge/knowledgesource/{source.pk}/change/").status_code == 200
    assert (
        browser.post(f"/admin/knowledge/knowledgesource/{source.pk}/change/", form).status_code
        == 403
    )
    assert browser.get("/admin/knowledge/document/").status_code == 403
