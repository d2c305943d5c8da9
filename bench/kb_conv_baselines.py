#!/usr/bin/env python
"""Baselines for a labelled KB query set, outside the product: plain all-MiniLM-L6-v2
cosine (one vector per document: title + text) and BM25 (Okapi, k1 1.5, b 0.75, lower-case
word tokens, no stemming) over the same documents.

Queries in the ``turns`` format are flattened two ways: ``last`` (the last customer turn
only) and ``flat`` (every turn joined, the whole conversation as one string); ``query``
strings are used as they are. No database needed.

    python bench/kb_conv_baselines.py --docs .devdata/mwozfaq/docs.jsonl \
        --queries .devdata/mwozfaq/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    def __init__(self, docs: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(tokens(d)) for d in docs]
        self.len = np.array([sum(c.values()) for c in self.tf], dtype=float)
        self.avg = float(self.len.mean())
        df: Counter[str] = Counter()
        for counts in self.tf:
            df.update(counts.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.tf))
        for term in set(tokens(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for i, counts in enumerate(self.tf):
                f = counts.get(term)
                if f:
                    norm = self.k1 * (1 - self.b + self.b * self.len[i] / self.avg)
                    out[i] += idf * f * (self.k1 + 1) / (f + norm)
        return out


def query_forms(row: dict[str, Any]) -> dict[str, str]:
    if "turns" not in row:
        return {"query": row["query"]}
    turns = row["turns"]
    last = next(t["text"] for t in reversed(turns) if t["speaker"] == "customer")
    return {"last": last, "flat": "\n".join(t["text"] for t in turns)}


def evaluate(scores: np.ndarray, ids: list[str], relevant: list[set[str]]) -> dict[str, float]:
    r1 = r5 = rr = 0.0
    for row, wanted in zip(scores, relevant, strict=True):
        top = np.argsort(-row, kind="stable")[:10]
        rank = next((i for i, j in enumerate(top, 1) if ids[j] in wanted), None)
        if rank:
            r1 += rank == 1
            r5 += rank <= 5
            rr += 1 / rank
    n = len(relevant)
    return {"recall_at_1": r1 / n, "recall_at_5": r5 / n, "mrr_at_10": rr / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True)
    parser.add_argument("--queries", required=True)
    args = parser.parse_args()
    docs = [json.loads(line) for line in Path(args.docs).read_text().splitlines() if line]
    rows = [json.loads(line) for line in Path(args.queries).read_text().splitlines() if line]
    ids = [d["id"] for d in docs]
    texts = [f"{d['title']}\n{d['text']}" for d in docs]
    relevant = [set(r["relevant"]) for r in rows]

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    django.setup()  # support.minilm's errors module needs the app registry
    from support.minilm import minilm

    encoder = minilm()
    doc_vectors = encoder.encode(texts)
    bm25 = BM25(texts)
    forms = list(query_forms(rows[0]))
    for form in forms:
        queries = [query_forms(r)[form] for r in rows]
        dense = encoder.encode(queries) @ doc_vectors.T
        sparse = np.stack([bm25.scores(q) for q in queries])
        for name, scores in (("MiniLM cosine", dense), ("BM25", sparse)):
            m = evaluate(scores, ids, relevant)
            print(
                f"{name:14s} {form:5s} n={len(rows)} recall@1={m['recall_at_1']:.3f} "
                f"recall@5={m['recall_at_5']:.3f} mrr@10={m['mrr_at_10']:.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
