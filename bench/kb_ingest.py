#!/usr/bin/env python
"""Knowledge-base ingestion throughput: chunks per second through the real pipeline.

Each run deletes the ``bench-ingest`` source, then ingests the corpus into it with
``documents_ingest`` (parse, heading-aware chunking, MiniLM embeddings, write, full-text
vectors) and prints chunks/s, the split (embed / write / parse), the process CPU time per
chunk and the load average. Then it edits ``--edit`` of the documents (one sentence added to
their last section) and ingests again: only the changed chunks are embedded.

``--legacy`` times the encoder as it was before issue 18 (one ``support.minilm.MiniLM``
session on onnxruntime's default thread pool, batches of 32 sorted by characters, padded to
the longest) for a comparison under the same load; ``--workers`` sets ``KB_EMBED_WORKERS``.

Usage (it starts `make run`'s PostgreSQL and Redis if they are not running, and works in a
database of its own, ``support_bench_kb``): python bench/kb_ingest.py
[--docs .devdata/stackfaq/docs.jsonl] [--runs 3] [--workers 2] [--legacy] [--edit 0.1]
[--embedder minilm|minilm-int8] [--max-tokens 128]
(embedder and tokens default to the settings: minilm-int8, 128)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness  # noqa: E402

_harness.setup_kb_bench(as_script=__name__ == "__main__")

from knowledge import embeddings  # noqa: E402
from knowledge.embeddings import Embedder  # noqa: E402
from knowledge.models import KnowledgeSource  # noqa: E402
from knowledge.parsing import parse_jsonl  # noqa: E402
from knowledge.services import IngestCounts, documents_ingest, source_get_or_create  # noqa: E402
from support.minilm import MAX_TOKENS, MiniLM  # noqa: E402

SOURCE = "bench-ingest"


class LegacyEmbedder(MiniLM):
    """The encoder before issue 18: ``MiniLM.encode`` (default threads, batches of 32)."""

    sends_text = False

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        return super().encode(texts)


def ingest(lines: list[str], embedder: Embedder) -> tuple[IngestCounts, float, float]:
    source = source_get_or_create(name=SOURCE)
    items = list(parse_jsonl("\n".join(lines)))
    cpu = time.process_time()
    started = time.perf_counter()
    counts = documents_ingest(source=source, items=items, embedder=embedder)
    return counts, time.perf_counter() - started, time.process_time() - cpu


def report(label: str, counts: IngestCounts, wall: float, cpu: float, load: float) -> None:
    t = counts.timings
    print(
        f"{label}: {counts.chunks} chunks in {wall:.1f} s = {counts.chunks / wall:.1f} chunks/s "
        f"(embedded {counts.embedded}, reused {counts.reused}; embed {t.get('embed_s', 0):.1f} s, "
        f"write {t.get('write_s', 0):.1f} s, parse {t.get('parse_s', 0):.2f} s; "
        f"process CPU {1000 * cpu / max(counts.chunks, 1):.1f} ms/chunk; "
        f"load {load:.1f} -> {os.getloadavg()[0]:.1f})",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="KB ingestion benchmark")
    parser.add_argument("--docs", default=str(ROOT / ".devdata/stackfaq/docs.jsonl"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--legacy", action="store_true", help="the encoder before issue 18")
    parser.add_argument("--edit", type=float, default=0.1, help="share of documents edited")
    parser.add_argument("--limit", type=int, default=0, help="first N documents only")
    from django.conf import settings

    parser.add_argument(
        "--embedder",
        default=settings.KB_EMBEDDER,
        choices=["minilm", "minilm-int8", "minilm-int8-fused", "minilm-int8-fused-ln"],
        help="KB embedder (default: KB_EMBEDDER)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=min(MAX_TOKENS, int(settings.KB_EMBED_MAX_TOKENS)),
        help="tokens embedded per passage (default: KB_EMBED_MAX_TOKENS)",
    )
    args = parser.parse_args()
    lines = [line for line in Path(args.docs).read_text().splitlines() if line.strip()]
    if args.limit:
        lines = lines[: args.limit]
    embedder: Embedder
    if args.legacy:
        embedder = LegacyEmbedder()
    else:
        factory = embeddings._REGISTRY[args.embedder]
        assert issubclass(factory, embeddings.MiniLMEmbedder)
        embedder = factory(workers=args.workers, max_tokens=args.max_tokens)
    embedder.encode(["warm up"])
    label = "legacy encoder" if args.legacy else f"{embedder.name}, workers={args.workers}"
    print(f"{args.docs}: {len(lines)} documents, {label}, cpu count {os.cpu_count()}")
    rng = random.Random(11)
    for run in range(1, args.runs + 1):
        KnowledgeSource.objects.filter(name=SOURCE).delete()
        load = os.getloadavg()[0]
        counts, wall, cpu = ingest(lines, embedder)
        report(f"run {run} cold", counts, wall, cpu, load)
        if args.edit <= 0:
            continue
        edited = list(lines)
        for i in rng.sample(range(len(lines)), max(1, int(len(lines) * args.edit))):
            row = json.loads(lines[i])
            row["text"] = row.get("text", "") + " This answer was reviewed in December."
            edited[i] = json.dumps(row)
        load = os.getloadavg()[0]
        counts, wall, cpu = ingest(edited, embedder)
        report(f"run {run} after editing {args.edit:.0%} of the documents", counts, wall, cpu, load)
    KnowledgeSource.objects.filter(name=SOURCE).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
