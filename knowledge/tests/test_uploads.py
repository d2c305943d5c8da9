"""Uploads (``POST /api/kb/documents``): version numbers under concurrent uploads, the
opt-in asynchronous mode (``Prefer: respond-async``) and what a hostile or careless
caller can send (docs/knowledge.md, "Uploads")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

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
