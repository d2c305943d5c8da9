"""Int8 passages at 128 tokens are the default (issue 18: ingestion >= 100 chunks/s), and
switching an installation whose chunks hold another embedder's vectors is safe: every
chunk records its embedder, search embeds its queries like the stored vectors until
``kb_reembed`` has moved them, and ``kb_reembed`` is idempotent."""

from __future__ import annotations

import importlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from knowledge import retrieval
from knowledge.conversation import AGENT, CUSTOMER, Turn
from knowledge.embeddings import (
    MiniLMEmbedder,
    embedder_named,
    get_embedder,
    passages_embedder_name,
)
from knowledge.models import Chunk, KnowledgeSource
from knowledge.readers import read_path
from knowledge.retrieval import search
from knowledge.services import (
    chunks_reembed,
    documents_ingest,
    embedding_key,
    source_get_or_create,
)

ARTICLES = [
    {"id": "refund", "title": "Refunds", "text": "A refund reaches your card within 5 days."},
    {"id": "password", "title": "Reset your password", "text": "Use the Forgot link."},
    {"id": "parking", "title": "Parking", "text": "The hotel has free parking for guests."},
]


@pytest.fixture
def faq_file(tmp_path: Path) -> Path:
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    return path


def ingest(path: Path, embedder=None) -> KnowledgeSource:
    source = source_get_or_create(name="faq", kind=KnowledgeSource.Kind.UPLOAD)
    documents_ingest(source=source, items=read_path(path), embedder=embedder)
    return source


def stored() -> dict[str, int]:
    out: dict[str, int] = {}
    for name in Chunk.objects.values_list("embedder", flat=True):
        out[name] = out.get(name, 0) + 1
    return out


def test_the_default_passages_are_int8_truncated_to_128_tokens(settings):
    # the int8 network with its fused graph and plain LayerNorms: the router's encoder
    assert (settings.KB_EMBEDDER, settings.KB_EMBED_MAX_TOKENS) == ("minilm-int8-fused-ln", 128)
    assert passages_embedder_name() == "minilm-int8-fused-ln-t128"
    assert get_embedder().name == "minilm-int8-fused-ln-t128"
    # Queries are embedded by the passages' own embedder (int8: the same space).
    assert retrieval.embeddings.get_query_embedder().name == "minilm-int8-fused-ln-t128"


def test_a_changed_max_tokens_setting_gives_the_embedder_it_names(settings):
    settings.KB_EMBED_MAX_TOKENS = 256
    assert get_embedder().name == "minilm-int8-fused-ln"
    settings.KB_EMBEDDER = "minilm-int8"
    assert get_embedder().name == "minilm-int8"
    settings.KB_EMBEDDER = "minilm"
    assert get_embedder().name == "minilm"
    settings.KB_EMBED_MAX_TOKENS = 128
    assert get_embedder().name == "minilm-t128"


def test_embedders_are_found_by_their_stored_name():
    for name in ("minilm", "minilm-int8-fused-ln-t128", "minilm-int8-t128", "minilm-t96"):
        embedder = embedder_named(name)
        assert embedder is not None
        assert embedder.name == name
    assert embedder_named("titan") is None  # sends text away: never chosen implicitly
    assert embedder_named("nonsense-t12") is None


@pytest.mark.django_db
def test_ingestion_records_each_chunks_embedder(faq_file):
    ingest(faq_file)
    assert stored() == {"minilm-int8-fused-ln-t128": 6}  # three titles, three passages


@pytest.mark.django_db
def test_search_follows_the_stored_vectors_until_kb_reembed_has_run(faq_file, caplog):
    # An installation upgraded from float32 passages (the old default, 256 tokens).
    ingest(faq_file, embedder=MiniLMEmbedder(max_tokens=256))
    assert stored() == {"minilm": 6}
    assert retrieval.get_query_embedder().name == "minilm"  # not the configured one
    assert "kb_reembed" in caplog.text
    results = search("how long until my refund arrives", k=3)
    assert results[0].document_external_id == "refund"

    counts = chunks_reembed()
    assert (counts.total, counts.embedded) == (6, 6)
    assert stored() == {"minilm-int8-fused-ln-t128": 6}
    refund = Chunk.objects.get(document__external_id="refund", kind="body")
    assert refund.embedding_key == embedding_key(
        "minilm-int8-fused-ln-t128", "Refunds\n" + refund.text
    )
    retrieval.stored_embedders.forget()  # what the invalidation does in every process
    assert retrieval.get_query_embedder().name == "minilm-int8-fused-ln-t128"
    results = search("how long until my refund arrives", k=3)
    assert results[0].document_external_id == "refund"
    # The vectors are the int8 embedder's own: a fresh ingestion gives the same ones.
    vector = get_embedder().encode(["Refunds\n" + refund.text])[0]
    assert float(vector @ refund.embedding) == pytest.approx(1.0, abs=1e-5)

    again = chunks_reembed()  # idempotent: nothing left to do
    assert (again.total, again.embedded) == (0, 0)


@pytest.mark.django_db
def test_kb_reembed_command_reports_progress_and_counts(faq_file):
    ingest(faq_file, embedder=MiniLMEmbedder(max_tokens=256))
    out, err = StringIO(), StringIO()
    call_command("kb_reembed", "--source", "faq", "--batch", "4", stdout=out, stderr=err)
    assert out.getvalue().startswith("embedder=minilm-int8-fused-ln-t128 pending=6 embedded=6 ")
    assert "kb_reembed" in err.getvalue()  # the progress bar
    out = StringIO()
    call_command("kb_reembed", "--no-progress", stdout=out)
    assert out.getvalue().startswith("embedder=minilm-int8-fused-ln-t128 pending=0 embedded=0 ")


@pytest.mark.django_db
def test_search_with_a_mixed_knowledge_base_never_fails_or_comes_back_empty(faq_file):
    ingest(faq_file, embedder=MiniLMEmbedder(max_tokens=256))
    # Half re-embedded (an interrupted kb_reembed): both spaces in the table.
    first = Chunk.objects.order_by("pk").values_list("pk", flat=True)[:3]
    source = KnowledgeSource.objects.get(name="faq")
    chunks_reembed(source=source, batch_size=3, progress=None)  # all of them ...
    Chunk.objects.filter(pk__in=list(first)).update(embedder="minilm")  # ... minus three
    retrieval.stored_embedders.forget()
    results = search("reset my password", k=3)
    assert results
    assert results[0].document_external_id == "password"


@pytest.mark.django_db
def test_the_migration_names_the_embedder_of_existing_chunks(faq_file):
    ingest(faq_file, embedder=MiniLMEmbedder(max_tokens=256))
    Chunk.objects.update(embedder="")  # as the column arrives on an existing table
    Chunk.objects.filter(document__external_id="parking").update(embedding_key="")  # pre-keys
    migration = importlib.import_module("knowledge.migrations.0005_chunk_embedder")
    migration.backfill(apps, None)
    assert stored() == {"minilm": 4, "": 2}
    retrieval.stored_embedders.forget()
    assert retrieval.stored_embedder() == "minilm"  # unknown ones count as the old default


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["kb_reembed", "kb_resync"])
def test_the_kb_commands_refuse_an_unknown_source_by_name(command):
    with pytest.raises(CommandError, match="no source named 'nope'"):
        call_command(command, "--source", "nope", "--no-progress", stdout=StringIO())


def test_the_caches_versions_are_read_once_per_moment_and_a_signal_is_seen(monkeypatch, db):
    """A search asks both knowledge-base caches for their shared version (five times): one
    Redis round trip serves them for ``VERSIONS_FRESH_SECONDS``; this process's own signal
    is seen at once, another process's within the window."""
    from django.core.cache import cache

    reads: list[list[str]] = []
    real = cache.get_many

    def counting(keys, *args, **kwargs):
        reads.append(list(keys))
        return real(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", counting)
    retrieval.versions.forget()
    first = retrieval.versions.get(retrieval.EMBEDDERS_VERSION_KEY)
    retrieval.versions.get(retrieval.NAME_STATS_VERSION_KEY)
    retrieval.stored_embedders.get()
    assert len(reads) == 1  # both keys, one round trip
    retrieval.stored_embedders_invalidate()  # this process's change: read again
    assert retrieval.versions.get(retrieval.EMBEDDERS_VERSION_KEY) != first
    assert len(reads) == 2
    cache.set(retrieval.NAME_STATS_VERSION_KEY, "another process's change", timeout=None)
    monkeypatch.setattr(retrieval, "VERSIONS_FRESH_SECONDS", 0.0)  # the window has passed
    assert retrieval.versions.get(retrieval.NAME_STATS_VERSION_KEY) == "another process's change"
    assert len(reads) == 3


@pytest.mark.django_db(transaction=True)
def test_one_process_counts_the_stored_embedders_and_the_others_take_its_counts(
    django_assert_num_queries, monkeypatch, tmp_path
):
    """A change (or the minute's refresh) costs one count over the chunks, not one per
    process: the counting process leaves its counts in the cache with the version they are
    for, and another process takes them from the round trip that reads the versions."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES[:2]))
    second.write_text(json.dumps(ARTICLES[2]) + "\n")
    source = source_get_or_create(name="counted", kind=KnowledgeSource.Kind.UPLOAD)
    documents_ingest(source=source, items=read_path(first))
    retrieval.name_stats_forget()
    with django_assert_num_queries(1):  # this process counts
        counts = retrieval.stored_embedders.get()
    assert sum(counts.values()) == Chunk.objects.count() > 0
    retrieval.name_stats_forget()  # another process: nothing of its own yet
    with django_assert_num_queries(0):
        assert retrieval.stored_embedders.get() == counts
    documents_ingest(source=source, items=read_path(second))  # signals a new version
    retrieval.name_stats_forget()
    with django_assert_num_queries(1):  # counts left for the old version are not taken
        counts = retrieval.stored_embedders.get()
    assert sum(counts.values()) == Chunk.objects.count()
    retrieval.name_stats_forget()
    monkeypatch.setattr(retrieval, "EMBEDDERS_SECONDS", 0.0)  # counts no longer fresh
    with django_assert_num_queries(1):
        retrieval.stored_embedders.get()


def test_counts_made_inside_a_transaction_are_not_shared(db):
    """Counts a rollback could undo stay in the process that made them."""
    from django.core.cache import cache

    retrieval.name_stats_forget()
    retrieval.stored_embedders.get()
    assert cache.get(retrieval.EMBEDDERS_COUNTS_KEY) is None


def _title_stats(stats: retrieval._NameStats) -> tuple[int, dict[str, int]]:
    with retrieval.connection.cursor() as cursor:
        stats.get(cursor)
    return stats.total, dict(stats.df)


@pytest.mark.django_db(transaction=True)
def test_one_process_reads_the_title_statistics_and_the_others_take_them(
    django_assert_num_queries, monkeypatch, tmp_path
):
    """A change (or the ten minutes' refresh) costs one ``ts_stat`` over the title chunks,
    not one per process: the process that reads them leaves them in the cache with their
    version, another takes them from there (a read of its own, not in the versions' round
    trip), and what was left for an older version is never taken."""
    from django.core.cache import cache

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES[:2]))
    second.write_text(json.dumps(ARTICLES[2]) + "\n")
    source = source_get_or_create(name="titled", kind=KnowledgeSource.Kind.UPLOAD)
    documents_ingest(source=source, items=read_path(first))
    versions_read: list[str] = []
    real_get_many = cache.get_many

    def get_many(keys, *args, **kwargs):
        versions_read.extend(keys)
        return real_get_many(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", get_many)
    one = retrieval.name_stats
    retrieval.name_stats_forget()
    with django_assert_num_queries(2):  # this process reads them: ts_stat and the count
        total, df = _title_stats(one)
    assert total == Chunk.objects.filter(kind="title").count() == 2
    assert df == {"refund": 1, "reset": 1, "password": 1}
    other = retrieval._NameStats()  # another process: nothing of its own yet
    with django_assert_num_queries(0):
        assert _title_stats(other) == (total, df)
    with django_assert_num_queries(1), retrieval.connection.cursor() as cursor:
        other.passages(cursor, ["refund"])  # read once, then remembered
        other.passages(cursor, ["refund"])

    documents_ingest(source=source, items=read_path(second))  # signals a new version
    with django_assert_num_queries(2):  # what was left for the old version is not taken
        total, df = _title_stats(one)
    assert total == 3
    assert df == {"refund": 1, "reset": 1, "password": 1, "park": 1}
    with django_assert_num_queries(0):  # the other process sees the change and takes them
        assert _title_stats(other) == (total, df)
    with django_assert_num_queries(1), retrieval.connection.cursor() as cursor:
        other.passages(cursor, ["refund"])  # its passages were dropped with the old version
    assert retrieval.NAME_STATS_KEY not in versions_read  # the small round trip stays small

    # What a process of another database (a deployment or bench sharing this Redis) left
    # under the same version is not taken.
    monkeypatch.setattr(retrieval, "_database_name", lambda: "another_database")
    with django_assert_num_queries(2):
        assert _title_stats(retrieval._NameStats()) == (total, df)
    monkeypatch.undo()

    monkeypatch.setattr(retrieval, "NAME_STATS_SECONDS", 0.0)  # no longer fresh
    with django_assert_num_queries(2):
        assert _title_stats(retrieval._NameStats()) == (total, df)


@pytest.mark.django_db(transaction=True)
def test_the_title_statistics_are_read_and_search_works_with_the_cache_down(
    django_assert_num_queries, faq_file, monkeypatch
):
    """With Redis down each process reads the title statistics for itself (and keeps them
    for ``NAME_STATS_SECONDS``): search does not fail with the cache."""
    from django.core.cache import cache
    from redis.exceptions import ConnectionError as RedisConnectionError

    ingest(faq_file)
    retrieval.name_stats_forget()
    with django_assert_num_queries(2):
        expected = _title_stats(retrieval._NameStats())  # left in the cache, not taken below

    def down(*args, **kwargs):
        raise RedisConnectionError("redis down")

    for name in ("get", "get_many", "set"):
        monkeypatch.setattr(cache, name, down)
    retrieval.name_stats_forget()
    with django_assert_num_queries(2):
        assert _title_stats(retrieval.name_stats) == expected
    with django_assert_num_queries(0):
        assert _title_stats(retrieval.name_stats) == expected
    turns = [
        Turn(CUSTOMER, "I am staying at your hotel next week."),
        Turn(AGENT, "Welcome! How can I help?"),
        Turn(CUSTOMER, "Do you have parking?"),
    ]
    assert search(turns, k=3)[0].document_external_id == "parking"


def test_title_statistics_read_inside_a_transaction_are_not_shared(db, faq_file):
    """Statistics a rollback could undo stay in the process that read them."""
    from django.core.cache import cache

    ingest(faq_file)
    retrieval.name_stats_forget()
    _title_stats(retrieval.name_stats)
    assert retrieval.name_stats.total == 3
    assert cache.get(retrieval.NAME_STATS_KEY) is None
