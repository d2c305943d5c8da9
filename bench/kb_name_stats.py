#!/usr/bin/env python
"""What a knowledge-base change costs each search process: reloading the title statistics.

After ingestion or deletion commits every process reloads the document frequency of each
lexeme among the title chunks (``retrieval.name_stats``) on its next search. Before, each
process ran the ``ts_stat`` over the title chunks and their count itself; now one process
does and leaves them in the Django cache (``retrieval.NAME_STATS_KEY``), and the others
take them from there. This prints, over ``--rounds`` reloads each:

- before: the reload with the sharing switched off (what every process paid);
- after, the process that reads them: ``ts_stat`` + count + leaving them in the cache;
- after, every other process: reading and unpickling what was left (and that cache read
  alone);
- the size of what is left, and a compact encoding considered instead (the lexemes as one
  string, the frequencies as uint32 bytes: a dict still has to be built from them).

The database (``support_bench_kb_names``, beside the product's, on `make run`'s local
PostgreSQL and Redis) is filled once with ``--chunks`` chunks in documents of
``--per-doc`` chunks, one of them the title chunk, as ingestion writes them (100,000
chunks: 20,000 titles). ``bench/kb.py``'s database has only StackFAQ's 125 title chunks
(its 100,000 synthetic chunks are passages), far fewer lexemes than a real knowledge base
of that size. The titles here are phrases of StackFAQ's passages (a real word
distribution), 70% of them with one or two made-up names (the long tail of product and
place names); the passages shuffled StackFAQ words; the vectors random (not searched
here, they give the rows their real width). Filling takes ~5 minutes.

Usage: python bench/kb_name_stats.py [--chunks 100000] [--per-doc 5] [--rounds 20] [--drop]
"""

from __future__ import annotations

import argparse
import array
import json
import os
import pickle
import random
import re
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness  # noqa: E402

_harness.setup_kb_bench(as_script=__name__ == "__main__", db=_harness.BENCH_KB_NAMES_DB)

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from knowledge import retrieval  # noqa: E402
from knowledge.embeddings import DIMENSIONS  # noqa: E402
from knowledge.models import Chunk, Document, KnowledgeSource  # noqa: E402
from knowledge.services import source_get_or_create  # noqa: E402

SOURCE = "bench-titles"
DOCS = ROOT / ".devdata" / "stackfaq" / "docs.jsonl"  # bench/stackfaq_prepare.py writes it
# fmt: off
SYLLABLES = [
    "ka", "lo", "mi", "ra", "ven", "dor", "tal", "bri", "sen", "qua", "ful", "ner", "ost",
    "pil", "gar", "wyn", "har", "del", "mont", "rey", "cas", "bel", "fir", "lun", "sol",
    "tor", "ash", "elm", "oak", "wick", "ham", "ford", "ley", "ton", "bury", "stead",
    "combe", "more", "field",
]
# fmt: on
NAMED_SHARE = 0.7


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()


def _titles(rng: random.Random, passages: list[list[str]], names: list[str], n: int) -> list[str]:
    out = []
    for _ in range(n):
        words = passages[rng.randrange(len(passages))]
        size = rng.randint(3, 8)
        start = rng.randrange(max(1, len(words) - size))
        title = words[start : start + size]
        if rng.random() < NAMED_SHARE:
            named = [rng.choice(names) for _ in range(rng.choice((1, 1, 1, 2)))]
            title = named + title
        out.append(" ".join(title))
    return out


def passages_read(path: Path = DOCS) -> list[list[str]]:
    """The words of each StackFAQ passage, in order."""
    return [
        re.findall(r"[A-Za-z0-9][\w'.-]*", json.loads(line)["text"])
        for line in path.read_text().splitlines()
    ]


def fill(target: int, per_doc: int, passages: list[list[str]]) -> KnowledgeSource:
    source = source_get_or_create(name=SOURCE)
    have = Chunk.objects.filter(source=source).count()
    if have >= target:
        print(f"{SOURCE} already holds {have} chunks")
        return source
    rng = random.Random(11)
    vectors_rng = np.random.default_rng(11)
    names = sorted({_name(rng) for _ in range(30_000)})[:12_000]
    base = vectors_rng.normal(size=(500, DIMENSIONS)).astype(np.float32)
    started = time.perf_counter()
    next_doc = Document.objects.filter(source=source).count()
    with connection.cursor() as cursor:
        while have < target:
            batch = min(5000, target - have) // per_doc * per_doc or per_doc
            n_docs = batch // per_doc
            titles = _titles(rng, passages, names, n_docs)
            documents = Document.objects.bulk_create(
                [
                    Document(
                        source=source,
                        external_id=f"titled-{next_doc + i}",
                        title=titles[i],
                        content_hash="bench",
                        version=1,
                    )
                    for i in range(n_docs)
                ]
            )
            next_doc += n_docs
            vectors = base[vectors_rng.integers(0, len(base), size=batch)]
            vectors = vectors + vectors_rng.normal(0, 0.3, size=vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = []
            for i in range(batch):
                doc, position = divmod(i, per_doc)
                if position == 0:
                    kind, text = "title", titles[doc]
                else:
                    words = passages[rng.randrange(len(passages))][:]
                    rng.shuffle(words)
                    kind, text = "body", " ".join(words[:80])
                row = (documents[doc].pk, source.pk, kind, position, text, len(text.split()))
                rows.append((*row, vectors[i], "bench"))
            _harness.chunks_copy(cursor, rows)
            have += batch
            print(f"  {have} chunks ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute(  # as ingestion writes them (knowledge.services._SEARCH_VECTOR_SQL)
            "UPDATE knowledge_chunk AS c SET search_vector = CASE WHEN c.kind = 'title' "
            "THEN setweight(to_tsvector('english', c.text), 'A') "
            "ELSE setweight(to_tsvector('english', d.title), 'A') "
            "|| setweight(to_tsvector('english', c.text), 'C') END "
            "FROM knowledge_document AS d "
            "WHERE d.id = c.document_id AND c.source_id = %s AND c.search_vector IS NULL",
            [source.pk],
        )
        cursor.execute("ANALYZE knowledge_chunk")
    print(f"filled to {have} chunks in {time.perf_counter() - started:.0f} s")
    return source


def _reload(*, before: bool = False, shared: bool) -> float:
    """Milliseconds of one process's reload after a change (a fresh ``_NameStats``, as in
    a process that has not read them yet): ``shared`` leaves what another process read in
    the cache, ``before`` switches the sharing off (the code before it)."""
    if not shared:
        cache.delete(retrieval.NAME_STATS_KEY)
    stats = retrieval._NameStats()
    with CaptureQueriesContext(connection) as seen, connection.cursor() as cursor:
        if before:
            with (
                mock.patch.object(retrieval, "_shared_name_stats", return_value=None),
                mock.patch.object(retrieval, "_shared_name_stats_leave", return_value=None),
            ):
                started = time.perf_counter()
                stats.get(cursor)
        else:
            started = time.perf_counter()
            stats.get(cursor)
        ms = (time.perf_counter() - started) * 1000
    assert stats.total > 0
    assert len(seen) == (0 if shared else 2)  # taken, or ts_stat and the count
    return ms


def _plain_take() -> float:
    """Milliseconds of the cache read alone (get and unpickle) of what is shipped."""
    started = time.perf_counter()
    value = cache.get(retrieval.NAME_STATS_KEY)
    ms = (time.perf_counter() - started) * 1000
    assert value["df"]
    return ms


def _compact_take() -> float:
    """Milliseconds to take the compact encoding considered and build the dict from it."""
    value = cache.get(retrieval.NAME_STATS_KEY)
    words, counts = "\n".join(value["df"]), array.array("I", value["df"].values()).tobytes()
    cache.set("bench-name-stats-compact", {"words": words, "counts": counts}, timeout=60)
    started = time.perf_counter()
    taken = cache.get("bench-name-stats-compact")
    frequencies = array.array("I")
    frequencies.frombytes(taken["counts"])
    df = dict(zip(taken["words"].split("\n"), frequencies, strict=True))
    ms = (time.perf_counter() - started) * 1000
    assert df == value["df"]
    return ms


def report(label: str, timings: list[float]) -> None:
    print(
        f"{label}: p50 {np.percentile(timings, 50):.1f} ms, p95 "
        f"{np.percentile(timings, 95):.1f} ms, min {min(timings):.1f}, max {max(timings):.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="title statistics reload per process")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--per-doc", type=int, default=5, help="chunks a document, one a title")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--drop", action="store_true", help="delete the bench source after")
    args = parser.parse_args()
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")
    fill(args.chunks, args.per_doc, passages_read())
    titles = Chunk.objects.filter(kind="title").count()
    print(f"{Chunk.objects.count()} chunks, {titles} title chunks")
    _reload(before=True, shared=False)  # warm the pages and the connection
    before, reading, taking, plain, compact = [], [], [], [], []
    for _ in range(args.rounds):  # interleaved, so a drift of the machine hits all alike
        before.append(_reload(before=True, shared=False))
        reading.append(_reload(shared=False))
        taking.append(_reload(shared=True))
        plain.append(_plain_take())
        compact.append(_compact_take())
    value = cache.get(retrieval.NAME_STATS_KEY)
    size = len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    print(f"title statistics: {len(value['df'])} lexemes, {size / 1024:.0f} KiB pickled")
    report("before, every process: ts_stat + count", before)
    report("after, the process that reads them: ts_stat + count + leaving them", reading)
    report("after, every other process: taking them from the cache", taking)
    report("  of which the cache read (get + unpickle of the dict)", plain)
    report(
        "considered: a compact encoding (lexemes as one string, uint32 counts), get + dict", compact
    )
    print(f"load average after: {os.getloadavg()}")
    if args.drop:
        KnowledgeSource.objects.filter(name=SOURCE).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
