"""Uploads (``POST /api/kb/documents``): version numbers under concurrent uploads, the
opt-in asynchronous mode (``Prefer: respond-async``) and what a hostile or careless
caller can send (docs/knowledge.md, "Uploads")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from knowledge import services
from knowledge.embeddings import get_embedder
from knowledge.models import Chunk, Document
from knowledge.services import IngestCounts, source_get_or_create, upload_ingest


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
def test_a_jsonl_reupload_takes_out_the_articles_the_file_no_longer_holds(
    browser: Client,
) -> None:
    """Re-uploading a file replaces its documents: for a JSONL file, the articles removed
    from it used to stay in search for good (nothing but a new upload of the same id could
    reach them)."""
    import json

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
    from knowledge.models import KnowledgeSource

    source = source_get_or_create(name="uploads", kind=KnowledgeSource.Kind.UPLOAD)
    counts = upload_ingest(source=source, filename=name, data=b"# Returns\nWithin 30 days.")
    assert counts.created == 1
    assert list(Document.objects.values_list("external_id", flat=True)) == [stored]
