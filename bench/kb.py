#!/usr/bin/env python
"""Knowledge-base benchmark: search latency over 100,000 chunks and ingestion throughput.

1. Ingestion: the real pipeline (parse, chunk, MiniLM int8 embeddings, write, full-text
   vectors) on StackFAQ's 125 threads with ``full=True``; prints chunks/s and the split.
2. Search: fills a ``bench-100k`` source up to N chunks (default 100,000) in the current
   database. Embedding 100k passages with MiniLM on this CPU would take hours, so the
   chunks are synthetic: each vector is a real StackFAQ passage vector plus Gaussian noise
   (cosine ~0.8 to its base, renormalised) and each text a shuffled mix of real passage
   words, which keeps both the HNSW graph and the GIN index realistic. Then it runs real
   StackFAQ paraphrases through hybrid ``rank_documents`` (the query vector computed
   beforehand and timed separately) at several ``hnsw.ef_search`` values and prints
   p50/p95, plus the full ``search()`` (embedding + snippets) at the default.
3. With ``--conversations FILE`` (``kb_eval``'s turns format, e.g. MWOZ-FAQ's test split),
   the same for conversation queries: building the query and embedding its turns, the
   ranking with the context vector and the carried names, and the full ``search()``.

Usage (it starts `make run`'s PostgreSQL and Redis if they are not running, and works in a
database of its own, ``support_bench_kb``, where the filled chunks stay for the next run;
``--drop`` deletes them): python bench/kb.py [--chunks 100000] [--queries 200] [--drop]
[--conversations .devdata/mwozfaq/test.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness  # noqa: E402

_harness.setup_kb_bench(as_script=__name__ == "__main__")

from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from bench.stackfaq_prepare import convert, find_xml  # noqa: E402
from knowledge import retrieval  # noqa: E402
from knowledge.embeddings import get_embedder, get_query_embedder  # noqa: E402
from knowledge.evaluation import load_queries  # noqa: E402
from knowledge.models import Chunk, Document, KnowledgeSource  # noqa: E402
from knowledge.parsing import parse_jsonl  # noqa: E402
from knowledge.retrieval import (  # noqa: E402
    conversation_query,
    conversation_vector,
    rank_documents,
    search,
)
from knowledge.services import (  # noqa: E402
    common_lexemes_count,
    documents_ingest,
    source_get_or_create,
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def timed(items: list, call, before=None) -> list[float]:
    """Milliseconds of ``call(item)`` for each item (``before()`` run untimed first)."""
    out = []
    for item in items:
        if before is not None:
            before()
        started = time.perf_counter()
        call(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(label: str, timings: list[float]) -> None:
    print(f"{label}: p50 {pct(timings, 50):.1f} ms, p95 {pct(timings, 95):.1f} ms")


def _forget_turn_vectors() -> None:
    retrieval._TURN_VECTORS.clear()  # a conversation seen for the first time


def _forget_conversation_caches() -> None:
    """A conversation seen first in a process that has read no passage for names yet (a
    process's first conversations after it starts or after the knowledge base changed; the
    common words are not read, ``CommonLexeme`` lists them)."""
    _forget_turn_vectors()
    retrieval.name_stats.forget_passages()


def bench_ingest(docs: list[dict]) -> None:
    source = source_get_or_create(name="bench-stackfaq")
    items = list(parse_jsonl("\n".join(json.dumps(d) for d in docs)))
    get_embedder().encode(["warm up"])
    counts = documents_ingest(source=source, items=items, full=True)
    total = counts.timings["total_s"]
    print(
        f"ingestion ({get_embedder().name}): {len(items)} documents, "
        f"{counts.chunks} chunks in {total:.1f} s = "
        f"{counts.chunks / total:.1f} chunks/s "
        f"(embed {counts.timings.get('embed_s', 0):.1f} s, "
        f"write {counts.timings.get('write_s', 0):.1f} s, "
        f"parse {counts.timings.get('parse_s', 0):.2f} s)"
    )


def fill(target: int, rng: np.random.Generator) -> KnowledgeSource:
    source = source_get_or_create(name="bench-100k")
    have = Chunk.objects.filter(source=source).count()
    if have >= target:
        print(f"bench-100k already holds {have} chunks")
        return source
    base = list(
        Chunk.objects.filter(source__name="bench-stackfaq", kind="body").values_list(
            "text", "embedding", "embedder"
        )
    )
    base_vectors = np.array([np.array(v, dtype=np.float32) for _, v, _ in base])
    base_words = [t.split() for t, _, _ in base]
    # Perturbed copies of those vectors: they live in the base chunks' embedding space, so
    # they carry its name (search embeds queries like the stored majority).
    space = base[0][2] if base else ""
    per_doc = 5
    started = time.perf_counter()
    next_doc = Document.objects.filter(source=source).count()
    with connection.cursor() as cursor:
        while have < target:
            batch = min(5000, target - have)
            n_docs = (batch + per_doc - 1) // per_doc
            documents = Document.objects.bulk_create(
                [
                    Document(
                        source=source,
                        external_id=f"synthetic-{next_doc + i}",
                        title=f"Synthetic article {next_doc + i}",
                        content_hash="bench",
                        version=1,
                    )
                    for i in range(n_docs)
                ]
            )
            next_doc += n_docs
            picks = rng.integers(0, len(base), size=batch)
            noise = rng.normal(0, 0.035, size=(batch, base_vectors.shape[1])).astype(np.float32)
            vectors = base_vectors[picks] + noise
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = []
            for i in range(batch):
                words = base_words[picks[i]][:]
                random.shuffle(words)
                text = " ".join(words[:80])
                # synthetic: no embedder produced this vector; it carries the space's name
                row = (documents[i // per_doc].pk, source.pk, "body", i % per_doc, text)
                rows.append((*row, len(words), vectors[i], space))
            _harness.chunks_copy(cursor, rows)
            have += batch
            print(f"  {have} chunks ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute(
            "UPDATE knowledge_chunk SET search_vector = to_tsvector('english', text) "
            "WHERE source_id = %s AND search_vector IS NULL",
            [source.pk],
        )
        cursor.execute("ANALYZE knowledge_chunk")
    print(f"filled to {have} chunks in {time.perf_counter() - started:.0f} s")
    return source


def bench_search(queries: list[str], total_chunks: int) -> None:
    vectors = []
    embed_ms = []
    embedder = get_query_embedder()
    for q in queries:
        started = time.perf_counter()
        vectors.append(embedder.encode([q])[0])
        embed_ms.append((time.perf_counter() - started) * 1000)
    print(
        f"query embedding ({embedder.name}, 1 query): p50 {pct(embed_ms, 50):.1f} ms, "
        f"p95 {pct(embed_ms, 95):.1f} ms"
    )
    for ef in (40, 80, 160):
        with override_settings(KB_HNSW_EF_SEARCH=ef):
            timings = []
            with connection.cursor() as cursor:
                for q, v in zip(queries, vectors, strict=True):
                    started = time.perf_counter()
                    rank_documents(q, k=5, query_vector=v, cursor=cursor)
                    timings.append((time.perf_counter() - started) * 1000)
        print(
            f"hybrid retrieval over {total_chunks} chunks, ef_search={ef}: "
            f"p50 {pct(timings, 50):.1f} ms, p95 {pct(timings, 95):.1f} ms"
        )
    report(
        "full search() incl. query embedding and snippets",
        timed(queries, lambda q: search(q, k=5)),
    )
    # A source filter: the StackFAQ source (658 chunks) among the 100k is few enough to
    # rank exactly (``retrieval.EXACT_SCAN_MAX``); a filtered HNSW scan walks the graph.
    with connection.cursor() as cursor:
        timings = []
        for q, v in zip(queries, vectors, strict=True):
            started = time.perf_counter()
            rank_documents(q, k=5, query_vector=v, cursor=cursor, sources=["bench-stackfaq"])
            timings.append((time.perf_counter() - started) * 1000)
    report("hybrid retrieval filtered to one source (bench-stackfaq, 658 chunks)", timings)


def bench_conversations(path: Path, count: int, total_chunks: int) -> None:
    rows = [r["query"] for r in load_queries(path)][:count]
    built, vectors = [], []
    prep = []
    for turns in rows:
        started = time.perf_counter()
        query = conversation_query(turns)
        vectors.append(conversation_vector(query))
        prep.append((time.perf_counter() - started) * 1000)
        built.append(query)
    print(
        f"conversation query build + embedding of its turns: p50 {pct(prep, 50):.1f} ms, "
        f"p95 {pct(prep, 95):.1f} ms ({len(rows)} conversations)"
    )
    timings = []
    with connection.cursor() as cursor:
        for query, vector in zip(built, vectors, strict=True):
            started = time.perf_counter()
            rank_documents(query, k=5, query_vector=vector, cursor=cursor)
            timings.append((time.perf_counter() - started) * 1000)
    print(
        f"conversational hybrid retrieval over {total_chunks} chunks: "
        f"p50 {pct(timings, 50):.1f} ms, p95 {pct(timings, 95):.1f} ms"
    )
    report(
        "full search() of a conversation (turn vectors cached by the pass above)",
        timed(rows, lambda turns: search(turns, k=5)),
    )
    report(
        "full search() of a conversation seen for the first time (no cached turn)",
        timed(rows, lambda turns: search(turns, k=5), before=_forget_turn_vectors),
    )
    report(
        "full search() of a conversation seen first, no passage read for names yet",
        timed(rows, lambda turns: search(turns, k=5), before=_forget_conversation_caches),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="KB benchmark")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--no-ingest", action="store_true", help="skip the ingestion run (reuse its vectors)"
    )
    parser.add_argument("--drop", action="store_true", help="delete the bench sources after")
    parser.add_argument("--conversations", default="", help="turns-format JSONL to time too")
    args = parser.parse_args()
    xml = find_xml()
    if xml is None:
        print("StackFAQ XML not found (set STACKFAQ_XML)", file=sys.stderr)
        return 1
    docs, queries = convert(xml)
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")
    if not args.no_ingest or not Chunk.objects.filter(source__name="bench-stackfaq").exists():
        bench_ingest(docs)
    rng = np.random.default_rng(7)
    random.seed(7)
    fill(args.chunks, rng)
    started = time.perf_counter()
    common = common_lexemes_count()  # as the worker does after an ingestion
    print(
        f"common words counted: {common} lexemes in more than "
        f"{retrieval.BODY_NAME_MAX_CHUNKS} passages, {time.perf_counter() - started:.2f} s"
    )
    total = Chunk.objects.count()
    sample = [q["query"] for q in random.sample(queries, min(args.queries, len(queries)))]
    bench_search(sample, total)
    if args.conversations:
        bench_conversations(Path(args.conversations), args.queries, total)
    print(f"load average after: {os.getloadavg()}")
    if args.drop:
        KnowledgeSource.objects.filter(name__in=["bench-100k", "bench-stackfaq"]).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
