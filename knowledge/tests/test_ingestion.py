from __future__ import annotations

import json
import threading
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from knowledge import services
from knowledge.models import Chunk, Document, IngestionJob, KnowledgeSource
from knowledge.parsing import parse_jsonl
from knowledge.readers import read_path
from knowledge.retrieval import _vector_candidates, get_query_embedder, search
from knowledge.services import documents_ingest, source_get_or_create
from knowledge.tests.conftest import make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    (tmp_path / "returns.md").write_text(
        "# Returns\nYou can return any item within 30 days for a full refund.\n"
        "## Damaged items\nSend us a photo and we ship a replacement.\n"
    )
    (tmp_path / "help").mkdir()
    (tmp_path / "help" / "password.html").write_text(
        "<html><head><title>Reset your password</title></head><body>"
        "<p>Click 'Forgot password' on the sign-in page and follow the email link.</p>"
        "</body></html>"
    )
    (tmp_path / "help" / "hours.txt").write_text("Our phone line is open 9am to 5pm.")
    (tmp_path / "warranty.pdf").write_bytes(make_pdf("The warranty lasts two years"))
    (tmp_path / "faq.jsonl").write_text(
        json.dumps({"id": "ship", "title": "Shipping", "text": "Orders ship in 2 days."}) + "\n"
    )
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")  # ignored: not a document type
    (tmp_path / ".hidden.md").write_text("# Secret\nnot ingested")
    return tmp_path


def ingest(path: Path, name: str = "docs"):
    source = source_get_or_create(name=name, kind=KnowledgeSource.Kind.FOLDER, path=str(path))
    return source, documents_ingest(source=source, items=read_path(path), delete_missing=True)


def state() -> dict[str, tuple[str, int, int]]:
    return {
        d.external_id: (d.status, d.version, d.chunks.count())
        for d in Document.objects.order_by("external_id")
    }


def test_every_format_is_ingested_with_ids_from_relative_paths(docs_dir):
    _, counts = ingest(docs_dir)
    assert counts.as_dict() == {
        "created": 5,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 0,
        "chunks": 11,
    }
    assert state() == {
        "faq.jsonl#ship": ("active", 1, 2),
        "help/hours.txt": ("active", 1, 2),
        "help/password.html": ("active", 1, 2),
        "returns.md": ("active", 1, 3),
        "warranty.pdf": ("active", 1, 2),
    }
    assert Chunk.objects.filter(embedding__isnull=True).count() == 0
    assert Chunk.objects.filter(search_vector__isnull=True).count() == 0
    damaged = Chunk.objects.get(document__external_id="returns.md", position=2)
    assert (damaged.heading_path, damaged.text) == (
        "Damaged items",
        "Send us a photo and we ship a replacement.",
    )


def test_second_run_skips_unchanged_documents(docs_dir):
    ingest(docs_dir)
    chunk_ids = set(Chunk.objects.values_list("id", flat=True))
    _, counts = ingest(docs_dir)
    assert (counts.created, counts.updated, counts.unchanged, counts.deleted) == (0, 0, 5, 0)
    assert counts.chunks == 0
    assert set(Chunk.objects.values_list("id", flat=True)) == chunk_ids


def test_changed_document_is_rechunked_and_versioned(docs_dir):
    ingest(docs_dir)
    old_ids = set(Chunk.objects.filter(document__external_id="help/hours.txt").values_list("id"))
    (docs_dir / "help" / "hours.txt").write_text("Our phone line is open 8am to 8pm.")
    _, counts = ingest(docs_dir)
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 4)
    doc = Document.objects.get(external_id="help/hours.txt")
    assert doc.version == 2
    texts = list(doc.chunks.filter(kind="body").values_list("text", flat=True))
    assert texts == ["Our phone line is open 8am to 8pm."]
    assert not old_ids & set(doc.chunks.values_list("id"))


class SpyEmbedder:
    """The real embedder, recording every text it is asked to embed."""

    def __init__(self) -> None:
        from knowledge.embeddings import get_embedder

        self.inner = get_embedder()
        self.name = self.inner.name
        self.dimensions = self.inner.dimensions
        self.sends_text = self.inner.sends_text
        self.texts: list[str] = []

    def encode(self, texts, *, redact_names=()):
        self.texts.extend(texts)
        return self.inner.encode(texts, redact_names=redact_names)


def vectors_of(external_id: str) -> dict[str, list[float]]:
    return {
        c.text: list(c.embedding) for c in Chunk.objects.filter(document__external_id=external_id)
    }


def test_unchanged_chunks_of_a_changed_document_keep_their_vectors(docs_dir):
    source, _ = ingest(docs_dir)
    before = vectors_of("returns.md")
    assert len(before) == 3  # title + two sections
    (docs_dir / "returns.md").write_text(
        "# Returns\nYou can return any item within 30 days for a full refund.\n"
        "## Damaged items\nSend us a photo and we ship a replacement the same day.\n"
    )
    spy = SpyEmbedder()
    counts = documents_ingest(source=source, items=read_path(docs_dir), embedder=spy)
    assert (counts.updated, counts.unchanged) == (1, 4)
    # only the edited section is embedded again; the title and first section keep theirs
    assert spy.texts == [
        "Returns > Damaged items\nSend us a photo and we ship a replacement the same day."
    ]
    assert (counts.embedded, counts.reused) == (1, 2)
    after = vectors_of("returns.md")
    assert after["Returns"] == before["Returns"]
    kept = "You can return any item within 30 days for a full refund."
    assert after[kept] == before[kept]
    fresh = spy.inner.encode(spy.texts)[0]
    new = after["Send us a photo and we ship a replacement the same day."]
    assert max(abs(a - b) for a, b in zip(new, fresh, strict=True)) < 1e-5
    # a full run embeds every chunk of every document again
    spy.texts.clear()
    counts = documents_ingest(source=source, items=read_path(docs_dir), embedder=spy, full=True)
    assert counts.embedded == counts.chunks == len(spy.texts) == 11


def test_a_text_repeated_in_a_batch_is_embedded_once(tmp_path):
    rows = [{"id": f"d{i}", "title": "Opening hours", "text": "Open 9 to 5."} for i in range(3)]
    (tmp_path / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = source_get_or_create(name="dup", kind=KnowledgeSource.Kind.FOLDER)
    spy = SpyEmbedder()
    counts = documents_ingest(source=source, items=read_path(tmp_path), embedder=spy)
    assert counts.chunks == 6
    assert sorted(spy.texts) == ["Opening hours", "Opening hours\nOpen 9 to 5."]
    assert (counts.embedded, counts.reused) == (2, 4)
    assert len({tuple(c.embedding) for c in Chunk.objects.filter(source=source)}) == 2


def faq_items(n: int, *, prefix: str = "d"):
    rows = [
        {"id": f"{prefix}{i}", "title": f"Question {i}", "text": f"Answer {i}."} for i in range(n)
    ]
    return list(parse_jsonl("\n".join(json.dumps(r) for r in rows), name="faq.jsonl"))


class OverlapEmbedder(SpyEmbedder):
    """Records, for each ``encode`` call, whether the ingestion wrote a batch meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.started = [threading.Event() for _ in range(4)]
        self.calls = 0

    def encode(self, texts, *, redact_names=()):
        self.started[min(self.calls, 3)].set()
        self.calls += 1
        return super().encode(texts, redact_names=redact_names)


def test_the_next_batch_is_embedded_while_the_previous_one_is_written(monkeypatch):
    """Ingestion is pipelined: batch 2's encode starts before batch 1 is written, so the
    database round trips do not leave the cores idle (the write of batch 1 waits here, with a
    timeout, for batch 2's encode to begin: in a sequential ingestion it never would)."""
    monkeypatch.setattr(services, "BATCH_DOCUMENTS", 2)
    spy = OverlapEmbedder()
    overlapped: list[bool] = []
    real_write = services._write_documents

    def write(source, batch, *args, **kwargs):
        overlapped.append(spy.started[len(overlapped) + 1].wait(timeout=5))
        return real_write(source, batch, *args, **kwargs)

    monkeypatch.setattr(services, "_write_documents", write)
    source = source_get_or_create(name="pipelined", kind=KnowledgeSource.Kind.FOLDER)
    counts = documents_ingest(source=source, items=faq_items(5), embedder=spy)
    assert spy.calls == 3
    assert overlapped[:2] == [True, True]  # batches 1 and 2 written while 2 and 3 embedded
    assert (counts.created, counts.chunks, counts.embedded) == (5, 10, 10)
    assert Chunk.objects.filter(source=source, embedding__isnull=True).count() == 0
    assert Document.objects.filter(source=source, version=1).count() == 5


def test_an_id_repeated_anywhere_in_the_input_is_refused_once(monkeypatch):
    monkeypatch.setattr(services, "BATCH_DOCUMENTS", 2)
    items = faq_items(3) + faq_items(1)  # d0 again, in a later batch
    source = source_get_or_create(name="dup-ids", kind=KnowledgeSource.Kind.FOLDER)
    counts = documents_ingest(source=source, items=items, embedder=SpyEmbedder())
    assert (counts.created, counts.updated, counts.failed) == (3, 0, 1)
    assert counts.errors == [{"id": "d0", "error": "duplicate id in input"}]
    assert Document.objects.get(source=source, external_id="d0").version == 1


def test_a_batch_already_embedded_is_written_when_the_next_one_fails(monkeypatch):
    monkeypatch.setattr(services, "BATCH_DOCUMENTS", 2)
    real_prepare = services._prepare_batch
    calls = []

    def prepare(source, docs, **kwargs):
        calls.append(len(docs))
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real_prepare(source, docs, **kwargs)

    monkeypatch.setattr(services, "_prepare_batch", prepare)
    source = source_get_or_create(name="half", kind=KnowledgeSource.Kind.FOLDER)
    with pytest.raises(RuntimeError, match="went away"):
        documents_ingest(source=source, items=faq_items(4), embedder=SpyEmbedder())
    assert sorted(Document.objects.filter(source=source).values_list("external_id", flat=True)) == [
        "d0",
        "d1",
    ]


def test_removed_files_are_deleted_and_their_chunks_removed(docs_dir):
    ingest(docs_dir)
    (docs_dir / "returns.md").unlink()
    (docs_dir / "faq.jsonl").write_text("")
    _, counts = ingest(docs_dir)
    assert (counts.deleted, counts.unchanged) == (2, 3)
    assert state()["returns.md"] == ("deleted", 2, 0)
    assert state()["faq.jsonl#ship"] == ("deleted", 2, 0)
    # coming back re-creates the chunks on the same document
    (docs_dir / "returns.md").write_text("# Returns\nWithin 30 days.")
    _, counts = ingest(docs_dir)
    assert counts.updated == 1
    assert state()["returns.md"] == ("active", 3, 2)


def test_a_broken_file_is_recorded_and_does_not_stop_the_run(docs_dir):
    (docs_dir / "broken.pdf").write_bytes(b"%PDF-1.4 nothing here")
    _, counts = ingest(docs_dir)
    assert (counts.created, counts.failed) == (5, 1)
    assert counts.errors[0]["id"] == "broken.pdf"
    assert "unreadable PDF" in counts.errors[0]["error"]
    assert state()["broken.pdf"] == ("failed", 0, 0)


def test_a_file_broken_since_the_last_sync_keeps_its_previous_version_in_search(docs_dir):
    """A file replaced by one that cannot be read used to take its good version out of
    search (document failed, passages deleted) until it was fixed."""
    ingest(docs_dir)
    before = texts_of("returns.md")
    (docs_dir / "returns.md").write_bytes(b"%PDF-1.4 saved as Markdown by mistake")
    (docs_dir / "faq.jsonl").write_text(
        json.dumps({"id": "ship", "title": "Shipping", "text": "Orders ship in 2 days."})
        + "\n{not json\n"
    )
    _, counts = ingest(docs_dir)
    assert (counts.updated, counts.deleted, counts.failed) == (0, 0, 2)
    assert sorted(e["id"] for e in counts.errors) == ["faq.jsonl", "returns.md"]
    [returns_error] = [e["error"] for e in counts.errors if e["id"] == "returns.md"]
    assert returns_error == (
        "returns.md: a PDF file, not text (name it .pdf) (version 1 stays in search)"
    )
    assert state()["returns.md"] == ("active", 1, 3)
    assert state()["faq.jsonl#ship"] == ("active", 1, 2)  # a bad line elsewhere in its file
    assert texts_of("returns.md") == before
    assert {r.document_external_id for r in search("return an item for a refund", k=3)} >= {
        "returns.md"
    }
    document = Document.objects.get(external_id="returns.md")
    assert document.error == "returns.md: a PDF file, not text (name it .pdf)"

    # Fixed with the same text again: nothing to re-embed, and the failure is cleared.
    (docs_dir / "returns.md").write_text(
        "# Returns\nYou can return any item within 30 days for a full refund.\n"
        "## Damaged items\nSend us a photo and we ship a replacement.\n"
    )
    _, counts = ingest(docs_dir)
    assert (counts.updated, counts.unchanged) == (0, 4)
    document.refresh_from_db()
    assert (document.status, document.version, document.error) == ("active", 1, "")


def texts_of(external_id: str) -> list[str]:
    return list(
        Chunk.objects.filter(document__external_id=external_id)
        .order_by("position")
        .values_list("text", flat=True)
    )


def test_search_finds_passages_with_highlighted_snippets_and_filters(docs_dir):
    ingest(docs_dir)
    other = source_get_or_create(name="other")
    documents_ingest(
        source=other,
        items=read_path(docs_dir / "faq.jsonl"),
    )
    results = search("how do I get my money back for a broken item?", k=3)
    assert results[0].document_external_id == "returns.md"
    assert results[0].source == "docs"
    top = search("refund", k=1, sources=["docs"])[0]
    assert top.document_external_id == "returns.md"
    assert "<mark>refund</mark>" in top.snippet
    only_other = search("shipping time", k=5, sources=["other"])
    assert [r.document_external_id for r in only_other] == ["ship"]  # a JSONL file: its ids
    assert search("shipping", k=5, tags=["nope"]) == []


def test_search_finds_live_chunks_among_replaced_ones_not_yet_vacuumed(docs_dir):
    """A re-ingestion deletes a changed document's chunks and writes new ones; until VACUUM
    the old ones stay in the HNSW index. A plain index scan returns its ``ef_search``
    nearest entries and then drops the dead ones, so near duplicates of the live chunks
    crowded them out (seen as a test that got no article in a busy test database)."""
    from django.db import connection

    ingest(docs_dir)
    live = list(Chunk.objects.filter(embedding__isnull=False))
    rng = np.random.default_rng(7)
    replaced = []
    for i in range(600):
        near = live[i % len(live)]
        vector = np.asarray(near.embedding, dtype=np.float32) + rng.normal(0, 0.01, 384)
        replaced.append(
            Chunk(
                document=near.document,
                source=near.source,
                kind=near.kind,
                position=1000 + i,
                text=near.text,
                embedding=(vector / np.linalg.norm(vector)).astype(np.float32),
                embedding_key=f"replaced-{i}",
                embedder=near.embedder,
            )
        )
    Chunk.objects.bulk_create(replaced)
    Chunk.objects.filter(position__gte=1000).delete()
    query = get_query_embedder().encode(["how do I get my money back?"])[0]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a big table's plan: the index
        assert len(_vector_candidates(cursor, query, 50, "", [])) == len(live)
        # Far more replaced chunks than the iterative scan walks (``hnsw.max_scan_tuples``):
        # the exact scan still finds every live one.
        cursor.execute("SET LOCAL hnsw.max_scan_tuples = 100")
        assert len(_vector_candidates(cursor, query, 50, "", [])) == len(live)
    documents = {c.document.external_id for c in live}
    found = {r.document_external_id for r in search("how do I get my money back?", k=10)}
    assert found == documents


def test_few_chunks_are_ranked_exactly_and_many_through_the_index(docs_dir, monkeypatch):
    """A small knowledge base (or source filter) is ranked by one exact scan: faster than
    the index there, and it needs no session settings. Past ``EXACT_SCAN_MAX`` the HNSW
    index does it; the results are the same."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from knowledge import retrieval

    ingest(docs_dir)
    other = source_get_or_create(name="other")
    documents_ingest(source=other, items=read_path(docs_dir / "faq.jsonl"))
    question = "how do I get my money back for a broken item?"

    def run(**filters):
        with CaptureQueriesContext(connection) as queries:
            results = search(question, **filters)
        found = [(r.document_external_id, round(r.score, 5)) for r in results]
        return found, sum("hnsw" in q["sql"] for q in queries.captured_queries)

    small, small_index = run()
    small_docs, small_docs_index = run(sources=["docs"])
    assert small
    assert small_docs
    assert small_index == small_docs_index == 0
    monkeypatch.setattr(retrieval, "EXACT_SCAN_MAX", 1)
    large, large_index = run()
    large_docs, large_docs_index = run(sources=["docs"])
    assert large_index == large_docs_index == 1
    assert (large, large_docs) == (small, small_docs)
    assert run(sources=["no-such-source"])[0] == []


def test_search_by_tag():
    source = source_get_or_create(name="tagged")
    lines = [
        {
            "id": "a",
            "title": "Billing refunds",
            "text": "Refunds go to the card.",
            "tags": ["billing"],
        },
        {
            "id": "b",
            "title": "Refund shipping",
            "text": "Refunds of postage.",
            "tags": ["shipping"],
        },
    ]
    from knowledge.parsing import parse_jsonl

    documents_ingest(source=source, items=parse_jsonl("\n".join(json.dumps(x) for x in lines)))
    assert [r.document_external_id for r in search("refund", k=5, tags=["billing"])] == ["a"]
    assert {r.document_external_id for r in search("refund", k=5)} == {"a", "b"}


def test_kb_ingest_command_prints_counts_and_records_a_job(docs_dir):
    out = StringIO()
    call_command("kb_ingest", str(docs_dir), "--source", "help-center", "--no-progress", stdout=out)
    assert out.getvalue().strip() == (
        f"source=help-center job={IngestionJob.objects.get().pk} created=5 updated=0 "
        "unchanged=0 deleted=0 failed=0 chunks=11 embedded=11 reused=0 common_words=0"
    )
    job = IngestionJob.objects.get()
    assert (job.kind, job.status, job.total, job.processed, job.created_count) == (
        "ingest",
        "succeeded",
        5,
        5,
        5,
    )
    assert job.progress == 1.0
    assert set(job.timings) >= {"parse_s", "embed_s", "write_s", "total_s", "wall_s"}
    out = StringIO()
    call_command("kb_ingest", str(docs_dir), "--source", "help-center", "--no-progress", stdout=out)
    assert "created=0 updated=0 unchanged=5 deleted=0" in out.getvalue()


def test_kb_resync_rereads_folder_sources(docs_dir):
    ingest(docs_dir, name="docs")
    (docs_dir / "help" / "hours.txt").unlink()
    out = StringIO()
    call_command("kb_resync", "--source", "docs", "--no-progress", stdout=out)
    job = IngestionJob.objects.get()
    assert out.getvalue().strip() == (
        f"job={job.pk} status=succeeded backend=local created=0 updated=0 unchanged=4 "
        "deleted=1 failed=0 chunks=0"
    )
    out = StringIO()
    call_command("kb_resync", "--full", "--no-progress", stdout=out)
    assert "updated=4 unchanged=0 deleted=0" in out.getvalue()
