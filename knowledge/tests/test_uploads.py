"""Uploads (``POST /api/kb/documents``): version numbers under concurrent uploads, the
opt-in asynchronous mode (``Prefer: respond-async``) and what a hostile or careless
caller can send (docs/knowledge.md, "Uploads")."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone

from knowledge import services, tasks
from knowledge.embeddings import get_embedder
from knowledge.models import Chunk, Document, IngestionJob, KnowledgeSource
from knowledge.services import IngestCounts, jobs_sweep, source_get_or_create, upload_ingest

RETURNS = b"# Returns\nWithin 30 days."


def in_threads(*calls: Callable[[], IngestCounts]) -> list[IngestCounts]:
    """Run each call on its own thread, so on its own database connection, and wait for
    them all; re-raise the first failure."""
    results: list[IngestCounts | None] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(index: int, call: Callable[[], IngestCounts]) -> None:
        try:
            results[index] = call()
        except BaseException as exc:  # handed back to the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if failures:
        raise failures[0]
    assert all(r is not None for r in results), "a call did not finish"
    return [r for r in results if r is not None]


class MeetingEmbedder:
    """Embeds like the real one, but each call waits until ``parties`` calls are under
    way: every upload has read the document (its version) before any of them writes."""

    def __init__(self, parties: int) -> None:
        self.real = get_embedder()
        self.name, self.dimensions = self.real.name, self.real.dimensions
        self.barrier = threading.Barrier(parties, timeout=30)

    def encode(self, texts: list[str], **kwargs: Any) -> Any:
        self.barrier.wait()
        return self.real.encode(texts, **kwargs)


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_uploads_of_one_document_get_versions_2_and_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both uploads read version 1, then write one after the other (the document row
    serialises them): each used to write version 1 + 1, so the second change was also
    "version 2". Now the version is taken from the row locked for the write."""
    source = source_get_or_create(name="uploads")
    upload_ingest(source=source, filename="returns.md", data=b"# Returns\nWithin 30 days.")
    meeting = MeetingEmbedder(2)
    monkeypatch.setattr(services, "get_embedder", lambda: meeting)

    def upload(days: int) -> Callable[[], IngestCounts]:
        return lambda: upload_ingest(
            source=source, filename="returns.md", data=f"# Returns\nWithin {days} days.".encode()
        )

    results = in_threads(upload(60), upload(90))
    assert [(r.created, r.updated, r.failed) for r in results] == [(0, 1, 0), (0, 1, 0)]
    document = Document.objects.get(source=source, external_id="returns.md")
    assert document.version == 3
    [body] = Chunk.objects.filter(document=document, kind="body").values_list("text", flat=True)
    assert body in ("Within 60 days.", "Within 90 days.")


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_identical_uploads_write_one_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same changed file sent twice at once (a double click, a client retrying): the
    second finds the first's content under the lock and counts as unchanged."""
    source = source_get_or_create(name="uploads")
    upload_ingest(source=source, filename="returns.md", data=b"# Returns\nWithin 30 days.")
    meeting = MeetingEmbedder(2)
    monkeypatch.setattr(services, "get_embedder", lambda: meeting)

    def upload() -> IngestCounts:
        return upload_ingest(
            source=source, filename="returns.md", data=b"# Returns\nWithin 60 days."
        )

    results = in_threads(upload, upload)
    assert sorted((r.updated, r.unchanged) for r in results) == [(0, 1), (1, 0)]
    document = Document.objects.get(source=source, external_id="returns.md")
    assert document.version == 2
    assert Chunk.objects.filter(document=document).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_uploads_changing_the_same_articles_in_opposite_orders_do_not_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two versions of one JSONL file, their articles in opposite orders, uploaded at
    once: each run used to lock its documents in file order, so one held ``a`` and waited
    for ``b`` while the other held ``b`` and waited for ``a`` (PostgreSQL killed one: a
    500). Rows are locked in id order now. Each run, once it has written its first
    document, waits (up to 3 s) for the other to have written one too: the old order
    always met there and deadlocked, the new one cannot meet (the second run waits for the
    first's lock on ``a``)."""

    def faq(*rows: tuple[str, str]) -> bytes:
        return "\n".join(
            json.dumps({"id": i, "title": f"Question {i}", "text": text}) for i, text in rows
        ).encode()

    source = source_get_or_create(name="uploads")
    upload_ingest(source=source, filename="faq.jsonl", data=faq(("a", "One."), ("b", "Two.")))
    meeting = MeetingEmbedder(2)
    monkeypatch.setattr(services, "get_embedder", lambda: meeting)
    rendezvous = threading.Barrier(2, timeout=3)
    met = threading.local()
    real_save = Document.save

    def save(self: Document, *args: Any, **kwargs: Any) -> None:
        real_save(self, *args, **kwargs)
        if not getattr(met, "done", False):
            met.done = True
            # Broken: the other run is waiting for this one's lock; go on.
            with contextlib.suppress(threading.BrokenBarrierError):
                rendezvous.wait()

    monkeypatch.setattr(Document, "save", save)
    results = in_threads(
        lambda: upload_ingest(
            source=source, filename="faq.jsonl", data=faq(("a", "Uno."), ("b", "Dos."))
        ),
        lambda: upload_ingest(
            source=source, filename="faq.jsonl", data=faq(("b", "Zwei."), ("a", "Eins."))
        ),
    )
    assert [r.updated for r in results] == [2, 2]
    assert sorted(Document.objects.values_list("external_id", "version")) == [
        ("faq.jsonl#a", 3),
        ("faq.jsonl#b", 3),
    ]


# --- What a hostile or careless caller sends ---------------------------------------------


@pytest.fixture
def browser(supervisor: Any) -> Client:
    """A supervisor's client that answers 500 instead of raising, as a browser sees it."""
    client = Client(raise_request_exception=False)
    client.force_login(supervisor)
    return client


def post_file(client: Client, name: str, data: bytes, **extra: Any) -> Any:
    return client.post("/api/kb/documents", {"file": SimpleUploadedFile(name, data)}, **extra)


@pytest.mark.django_db
def test_a_file_over_the_cap_is_a_413_naming_the_limit(browser: Client) -> None:
    response = post_file(browser, "manual.md", b"a" * (services.UPLOAD_MAX_BYTES + 1))
    assert response.status_code == 413, response.content
    assert response.json()["error"] == {
        "code": "too_large",
        "message": "file: manual.md is 10,485,761 bytes; an upload takes at most 10 MB "
        "(10,485,760 bytes): load bigger files with kb_ingest or from S3",
        "details": {"limit_bytes": 10485760},
    }
    assert not Document.objects.exists()


@pytest.mark.django_db
def test_a_body_far_over_the_cap_is_refused_before_it_is_parsed(
    browser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30 MB body is refused on its Content-Length: the multipart parser never copies
    it to a temporary file."""
    from django.http.multipartparser import MultiPartParser

    parsed: list[bool] = []
    real_parse = MultiPartParser.parse

    def parse(self: MultiPartParser) -> Any:
        parsed.append(True)
        return real_parse(self)

    monkeypatch.setattr(MultiPartParser, "parse", parse)
    response = post_file(browser, "huge.md", b"a" * (3 * services.UPLOAD_MAX_BYTES))
    assert response.status_code == 413, response.content
    assert response.json()["error"]["message"].startswith("file: the request is 31,457,"), (
        response.json()
    )
    assert "an upload takes at most 10 MB (10,485,760 bytes)" in response.json()["error"]["message"]
    assert parsed == []


@pytest.mark.django_db
def test_a_zero_byte_file_is_refused_and_changes_nothing(browser: Client) -> None:
    """An empty file is a mistake (a failed export, a drag of the wrong thing): it used to
    be "ingested" as a failed document (a row for a file that never was) or, over a good
    document, to mark it as failing."""
    assert post_file(browser, "returns.md", b"# Returns\nWithin 30 days.").status_code == 201
    for name in ("returns.md", "new.md"):
        response = post_file(browser, name, b"")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["message"] == f"file: {name} is empty (0 bytes)"
    assert list(Document.objects.values_list("external_id", "status", "version", "error")) == [
        ("returns.md", "active", 1, "")
    ]


@pytest.mark.django_db
def test_the_kind_is_the_extensions_never_the_content_type_the_client_claims(
    browser: Client,
) -> None:
    def post(name: str, data: bytes, claimed: str) -> Any:
        return browser.post(
            "/api/kb/documents", {"file": SimpleUploadedFile(name, data, content_type=claimed)}
        )

    assert post("returns.md", RETURNS, "application/pdf").status_code == 201
    assert Document.objects.get(external_id="returns.md").content_type == "markdown"
    fake = post("manual.pdf", RETURNS, "text/markdown")
    assert fake.status_code == 400, fake.content
    assert fake.json()["errors"][0]["error"].startswith("manual.pdf: unreadable PDF")
    script = post("page.html", b"<script>alert(1)</script><p>Opening hours</p>", "text/plain")
    assert script.status_code == 201
    assert not Chunk.objects.filter(document__external_id="page.html", text__contains="alert")


@pytest.mark.django_db
def test_a_jsonl_reupload_takes_out_the_articles_the_file_no_longer_holds(
    browser: Client,
) -> None:
    """Re-uploading a file replaces its documents: for a JSONL file, the articles removed
    from it used to stay in search for good (nothing but a new upload of the same id could
    reach them)."""

    def faq(*ids: str) -> bytes:
        return "\n".join(
            json.dumps({"id": i, "title": f"Question {i}", "text": f"Answer {i}."}) for i in ids
        ).encode()

    assert post_file(browser, "faq.jsonl", faq("a", "b", "c")).status_code == 201
    assert post_file(browser, "faq.jsonl#x.md", b"# Not of the JSONL\nbody").status_code == 400
    again = post_file(browser, "faq.jsonl", faq("a", "c"))
    assert again.status_code == 201, again.content
    assert (again.json()["unchanged"], again.json()["deleted"]) == (2, 1)
    assert sorted(Document.objects.values_list("external_id", "status")) == [
        ("faq.jsonl#a", "active"),
        ("faq.jsonl#b", "deleted"),
        ("faq.jsonl#c", "active"),
    ]
    assert not Chunk.objects.filter(document__external_id="faq.jsonl#b").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../etc/returns.md", "returns.md"),
        ("..\\..\\returns.md", "returns.md"),
        ("ret\u202eurns.md", "returns.md"),  # a right-to-left override hides the extension
        ("  returns.md  ", "returns.md"),
    ],
)
def test_path_tricks_in_file_names_name_the_last_component_only(
    browser: Client, name: str, stored: str
) -> None:
    source = source_get_or_create(name="uploads", kind=KnowledgeSource.Kind.UPLOAD)
    counts = upload_ingest(source=source, filename=name, data=b"# Returns\nWithin 30 days.")
    assert counts.created == 1
    assert list(Document.objects.values_list("external_id", flat=True)) == [stored]


# --- Prefer: respond-async -------------------------------------------------------------


ASYNC = {"HTTP_PREFER": "respond-async"}


def broker_refuses(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The task broker refuses ``kb_upload_task`` (Redis down); returns what restores it."""
    from kombu.exceptions import OperationalError

    real_delay = tasks.kb_upload_task.delay

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(tasks.kb_upload_task, "delay", broker_down)
    return lambda: monkeypatch.setattr(tasks.kb_upload_task, "delay", real_delay)


def post_async(client: Client, capture: Any, *, data: bytes = RETURNS, run: bool = True) -> Any:
    """An asynchronous upload of ``returns.md``; its task runs at the commit if ``run``."""
    with capture(execute=run):
        return post_file(client, "returns.md", data, **ASYNC)


@pytest.fixture
def media(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(media: Any) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


@pytest.mark.django_db
def test_an_async_upload_is_stored_answered_202_with_its_job_and_ingested_by_a_worker(
    browser: Client, agent_client: Any, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post_file(browser, "returns.md", b"# Returns\nWithin 30 days.", **ASYNC)
    assert response.status_code == 202, response.content
    assert response["Preference-Applied"] == "respond-async"
    body = response.json()
    assert response["Location"] == f"/api/kb/jobs/{body['id']}"
    assert (body["kind"], body["status"], body["source"], body["file"]) == (
        "upload",
        "queued",
        "uploads",
        "returns.md",
    )
    # Stored before anything else, under a name of ours; nothing ingested yet.
    job = IngestionJob.objects.get(pk=body["id"])
    assert stored_files(media) == [job.file_key]
    assert job.file_key.startswith("kb-uploads/")
    assert "returns" not in job.file_key
    assert not Document.objects.exists()

    for callback in queued:  # the commit: the task runs (eagerly, in tests)
        callback()
    shown = agent_client.get(response["Location"]).json()
    assert (shown["status"], shown["progress"], shown["errors"]) == ("succeeded", 1.0, [])
    assert shown["counts"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 0,
        "chunks": 2,
    }
    assert list(Document.objects.values_list("external_id", "version")) == [("returns.md", 1)]
    assert stored_files(media) == []  # read and ingested: removed
    assert IngestionJob.objects.get(pk=body["id"]).file_key == ""


@pytest.mark.django_db
def test_a_redelivered_upload_task_never_ingests_twice(
    browser: Client, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_async(browser, django_capture_on_commit_callbacks)
    job_id = response.json()["id"]
    before = IngestionJob.objects.get(pk=job_id)
    assert before.status == "succeeded"
    tasks.kb_upload_task.apply(args=(job_id,)).get()  # the broker delivers it again
    after = IngestionJob.objects.get(pk=job_id)
    assert (after.status, after.finished_at, after.created_count) == (
        "succeeded",
        before.finished_at,
        1,
    )
    assert list(Document.objects.values_list("version", flat=True)) == [1]
    assert Chunk.objects.count() == 2

    # A copy that arrives while the first copy runs finds the job taken and returns.
    running = IngestionJob.objects.create(
        source=before.source, kind="upload", status="running", file_name="x.md", file_key="k"
    )
    tasks.kb_upload_task.apply(args=(running.pk,)).get()
    assert IngestionJob.objects.get(pk=running.pk).status == "running"


@pytest.mark.django_db
def test_an_async_upload_that_cannot_be_read_fails_its_job_with_the_reason(
    browser: Client, agent_client: Any, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_async(
        browser, django_capture_on_commit_callbacks, data=b"%PDF-1.4 exported by mistake"
    )
    assert response.status_code == 202
    shown = agent_client.get(response["Location"]).json()
    assert shown["status"] == "failed"
    assert shown["counts"]["failed"] == 1
    reason = "returns.md: a PDF file, not text (name it .pdf)"
    assert shown["errors"] == [
        {"id": "returns.md", "error": reason},
        {"id": "", "error": f"not ingested: {reason}"},
    ]
    assert stored_files(media) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("returns.md", b"", 400, "file: returns.md is empty (0 bytes)"),
        ("photo.png", b"\x89PNG", 400, "file: photo.png is not Markdown, HTML, text, PDF or JSONL"),
    ],
)
def test_an_async_upload_is_checked_before_it_is_stored(
    browser: Client, media: Any, name: str, data: bytes, status: int, message: str
) -> None:
    response = post_file(browser, name, data, **ASYNC)
    assert response.status_code == status, response.content
    assert response.json()["error"]["message"] == message
    assert not media.exists() or stored_files(media) == []
    assert not IngestionJob.objects.exists()


@pytest.mark.django_db
def test_an_async_upload_the_broker_refuses_keeps_its_file_and_fails_its_job(
    browser: Client,
    agent_client: Any,
    media: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    broker_refuses(monkeypatch)
    response = post_async(browser, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    shown = agent_client.get(response["Location"]).json()
    assert (shown["status"], shown["errors"]) == (
        "failed",
        [
            {
                "id": "",
                "error": "not queued: the task broker refused it (OperationalError); "
                "upload the file again",
            }
        ],
    )
    assert len(stored_files(media)) == 1  # nothing received is lost


@pytest.mark.django_db
def test_an_upload_job_left_by_a_killed_worker_is_swept_with_what_to_do(
    browser: Client, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_async(browser, django_capture_on_commit_callbacks, run=False)
    job_id = response.json()["id"]
    IngestionJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert jobs_sweep(stale_seconds=900) == 1
    job = IngestionJob.objects.get(pk=job_id)
    assert job.status == "failed"
    assert job.errors[-1]["error"].endswith("upload the file again")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("prefer", "status"),
    [
        ("respond-async", 202),
        ("wait=10, respond-async", 202),
        ("RESPOND-ASYNC; x=1", 202),
        ("return=minimal", 201),
        ("respond-asynchronously", 201),
    ],
)
def test_only_a_prefer_respond_async_header_makes_an_upload_async(
    browser: Client,
    media: Any,
    prefer: str,
    status: int,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post_file(browser, "a.md", b"# A\nalpha", HTTP_PREFER=prefer)
    assert response.status_code == status, response.content
    assert Document.objects.get().status == "active"


@pytest.mark.django_db
def test_agents_cannot_upload_asynchronously_either(agent_client: Any, media: Any) -> None:
    response = agent_client.post(
        "/api/kb/documents",
        {"file": SimpleUploadedFile("a.md", b"# A\nalpha")},
        format="multipart",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 403
    assert not IngestionJob.objects.exists()
    assert not media.exists() or stored_files(media) == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["../etc", "FAQ uploads", "<b>x</b>", "uploads\n"])
def test_an_upload_to_a_new_source_needs_a_slug_name(browser: Client, name: str) -> None:
    """A source is created by the first upload that names it: any string used to become
    a source (the model's name is a slug, which the admin enforces)."""

    response = browser.post(
        "/api/kb/documents", {"file": SimpleUploadedFile("a.md", b"# A\nalpha"), "source": name}
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"] == (
        "source: a new source's name is a slug of 1 to 100 letters, digits, '-' or '_'"
    )
    assert not KnowledgeSource.objects.exists()
    assert not Document.objects.exists()


@pytest.mark.django_db
def test_a_supervisor_runs_a_failed_upload_again_from_its_kept_file(
    browser: Client,
    media: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The broker refused the task: the job failed, the file was kept. The admin's action
    queues it again as a new job that ingests the kept file and removes it; the failed job
    keeps its record without the file, so it cannot be run twice."""
    broker_back = broker_refuses(monkeypatch)
    failed_id = post_async(browser, django_capture_on_commit_callbacks).json()["id"]
    kept = IngestionJob.objects.get(pk=failed_id).file_key
    assert stored_files(media) == [kept]
    broker_back()

    # The supervisor (the role, no Django permissions: docs/knowledge.md, "Uploads"); the
    # jobs' page was the superusers' only (403).
    admin = browser
    changelist = "/admin/knowledge/ingestionjob/"
    action = {"action": "upload_again", "_selected_action": [failed_id]}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(changelist, action, follow=True)
    assert response.status_code == 200
    again = IngestionJob.objects.exclude(pk=failed_id).get()
    assert f"Queued again as job(s) {again.pk}." in response.content.decode()
    assert (again.kind, again.status, again.file_name) == ("upload", "succeeded", "returns.md")
    assert list(Document.objects.values_list("external_id", "version")) == [("returns.md", 1)]
    assert stored_files(media) == []
    failed = IngestionJob.objects.get(pk=failed_id)
    assert (failed.status, failed.file_key) == ("failed", "")

    response = admin.post(changelist, action, follow=True)  # the same job, again
    assert "only a failed upload whose file was kept can run again" in response.content.decode()
    assert IngestionJob.objects.count() == 2


@pytest.mark.django_db
def test_only_a_failed_upload_with_its_file_runs_again(
    browser: Client, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    done = IngestionJob.objects.get(
        pk=post_async(browser, django_capture_on_commit_callbacks).json()["id"]
    )
    assert done.status == "succeeded"
    with pytest.raises(services.InvalidInput, match="upload job, succeeded"):
        services.upload_job_retry(job=done)


@pytest.mark.django_db
def test_staff_who_are_not_supervisors_cannot_run_an_upload_again(
    browser: Client,
    django_user_model: Any,
    media: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A staff account given only the view permission on jobs sees the action refused."""
    from django.contrib.auth.models import Permission

    broker_refuses(monkeypatch)
    failed_id = post_async(browser, django_capture_on_commit_callbacks).json()["id"]
    clerk = django_user_model.objects.create_user("clerk", "clerk@example.com", "pw-tests-1")
    clerk.is_staff = True
    clerk.save()
    clerk.user_permissions.add(Permission.objects.get(codename="view_ingestionjob"))
    client = Client()
    client.force_login(clerk)
    action = {"action": "upload_again", "_selected_action": [failed_id]}
    response = client.post("/admin/knowledge/ingestionjob/", action, follow=True)
    assert response.status_code == 200
    assert "Only supervisors run uploads again." in response.content.decode()
    assert IngestionJob.objects.count() == 1
    assert IngestionJob.objects.get(pk=failed_id).file_key != ""
