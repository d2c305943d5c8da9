#!/usr/bin/env python
"""Tune conversational retrieval on a labelled split (the dev split of MWOZ-FAQ).

Runs the real ranking (``knowledge.retrieval.rank_documents`` on the configured
database) for a grid of query-builder and fusion parameters and prints recall@1/@5 and
MRR@10 for each, best last. Embeddings are computed once per distinct text.

    python bench/kb_conv_tune.py --queries .devdata/mwozfaq/dev.jsonl --source mwozfaq
    python bench/kb_conv_tune.py ... --stage fusion --context-weight 0.5 --agent-weight 0.6 \
        --decay 0.7

``--stage dense`` searches the query-vector parameters (context weight, agent weight,
decay) with vectors only; ``--stage fusion`` then the text and entity weights and the
entity document-frequency cut with the hybrid ranking.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")


class CachedEmbedder:
    """Encodes each distinct text once."""

    name = "minilm"
    dimensions = 384
    sends_text = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[str, np.ndarray] = {}

    def warm(self, texts: Sequence[str]) -> None:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            for text, vector in zip(todo, self._inner.encode(todo), strict=True):
                self._cache[text] = vector

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        self.warm(texts)
        return np.stack([self._cache[t] for t in texts])


def metrics(rankings: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    hits1 = hits5 = rr = 0.0
    for ranked, wanted in zip(rankings, relevant, strict=True):
        rank = next((i for i, d in enumerate(ranked, 1) if d in wanted), None)
        if rank:
            hits1 += rank <= 1
            hits5 += rank <= 5
            rr += 1 / rank if rank <= 10 else 0.0
    n = len(relevant)
    return {"r1": hits1 / n, "r5": hits5 / n, "mrr": rr / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", required=True)
    parser.add_argument("--source", default="")
    parser.add_argument("--stage", choices=["dense", "fusion", "one"], default="dense")
    parser.add_argument("--context-weight", type=float, default=0.5)
    parser.add_argument("--agent-weight", type=float, default=0.6)
    parser.add_argument("--decay", type=float, default=0.7)
    parser.add_argument("--text-weight", type=float, default=0.02)
    parser.add_argument("--entity-weight", type=float, default=0.1)
    parser.add_argument("--max-df", type=float, default=0.02)
    parser.add_argument("--limit", type=int, default=0, help="first N queries only")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from knowledge.conversation import build_query
    from knowledge.embeddings import get_embedder
    from knowledge.evaluation import load_queries
    from knowledge.models import Document
    from knowledge.retrieval import conversation_vector, rank_documents

    rows = load_queries(Path(args.queries))
    if args.limit:
        rows = rows[: args.limit]
    relevant = [set(r["relevant"]) for r in rows]
    external = dict(Document.objects.values_list("id", "external_id"))
    embedder = CachedEmbedder(get_embedder())
    sources = [args.source] if args.source else None

    def run(cw: float, aw: float, decay: float, mode: str, tw: float, ew: float, df: float):
        settings.KB_ENTITY_MAX_DF = df
        rankings = []
        queries = [
            build_query(r["query"], context_weight=cw, agent_weight=aw, decay=decay) for r in rows
        ]
        embedder.warm([p.text for q in queries for p in q.parts])
        with connection.cursor() as cursor:
            for query in queries:
                vector = conversation_vector(query, embedder)
                ranking = rank_documents(
                    query,
                    k=10,
                    sources=sources,
                    mode=mode,
                    query_vector=vector,
                    text_weight=tw,
                    entity_weight=ew,
                    cursor=cursor,
                )
                rankings.append([external[d] for d, _ in ranking.ranked])
        return metrics(rankings, relevant)

    if args.stage == "dense":
        grid: list[tuple[Any, ...]] = [
            (cw, aw, decay, "vector", 0.0, 0.0, 0.0)
            for cw, aw, decay in itertools.product(
                [0.0, 0.3, 0.5, 0.7, 1.0, 1.5], [0.3, 0.6, 1.0], [0.5, 0.7, 0.9]
            )
        ]
    elif args.stage == "fusion":
        grid = [
            (args.context_weight, args.agent_weight, args.decay, "hybrid", tw, ew, df)
            for tw, ew, df in itertools.product(
                [0.0, 0.02, 0.05], [0.0, 0.05, 0.1, 0.2, 0.3], [0.005, 0.01, 0.02, 0.05]
            )
        ]
    else:
        grid = [
            (
                args.context_weight,
                args.agent_weight,
                args.decay,
                "hybrid",
                args.text_weight,
                args.entity_weight,
                args.max_df,
            )
        ]
    results = []
    for params in grid:
        if args.stage == "dense" and params[0] == 0.0 and (params[1], params[2]) != (0.3, 0.5):
            continue  # context weight 0: the other two do not matter
        m = run(*params)
        results.append((m, params))
        cw, aw, decay, mode, tw, ew, df = params
        print(
            f"cw={cw} aw={aw} decay={decay} mode={mode} tw={tw} ew={ew} max_df={df}  "
            f"r1={m['r1']:.3f} r5={m['r5']:.3f} mrr={m['mrr']:.3f}",
            flush=True,
        )
    best = max(results, key=lambda item: (item[0]["r5"], item[0]["mrr"]))
    print("best:", best[1], {k: round(v, 4) for k, v in best[0].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
