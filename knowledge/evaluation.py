"""Retrieval evaluation shared by ``kb_eval``, the tests and ``bench/``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.backends import get_backend
from knowledge.conversation import parse_turns
from knowledge.retrieval import conversation_query, search
from support.errors import InvalidInput


def parse_query_row(row: Any, where: str) -> dict[str, Any]:
    """One labelled query: ``{"query": "..."}`` or ``{"turns": [{speaker, text}...]}``,
    plus ``"relevant": [document ids]``. The query comes back as a string or a list of
    ``Turn``. An empty ``relevant`` list is a question the knowledge base has no answer
    for: the retrieval figures leave it out, the draft figures count how often it still
    gets a draft (``no_answer_drafted``)."""
    if not isinstance(row, dict):
        raise InvalidInput(f"{where}: a JSON object is required")
    if "turns" in row:
        try:
            query: Any = parse_turns(row["turns"])
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}") from exc
    elif isinstance(row.get("query"), str) and row["query"].strip():
        query = row["query"]
    else:
        raise InvalidInput(f"{where}: needs a 'query' string or a 'turns' list")
    relevant = row.get("relevant")
    if not isinstance(relevant, list):
        raise InvalidInput(
            f"{where}: needs a 'relevant' list (empty: the knowledge base has no answer)"
        )
    return {"query": query, "relevant": [str(r) for r in relevant]}


def load_queries(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
        rows.append(parse_query_row(row, f"{path}:{number}"))
    if not rows:
        raise InvalidInput(f"{path}: no queries")
    return rows


def evaluate(
    queries: list[dict[str, Any]],
    *,
    source: str | None = None,
    k: int = 5,
    mode: str = "hybrid",
    backend: str | None = None,
    **search_options: Any,
) -> dict[str, Any]:
    """recall@1, recall@5, recall@k, MRR@10 over documents, and latency per query, over
    the queries that have a relevant document (``unanswerable``: how many were left out)."""
    answerable = [row for row in queries if row["relevant"]]
    if not answerable:
        raise InvalidInput("no query names a relevant document: nothing to find")
    unanswerable = len(queries) - len(answerable)
    queries = answerable
    depth = max(10, k)
    sources = [source] if source else None
    hits1 = hits5 = hitsk = 0
    rr = 0.0
    latencies = []
    kb = get_backend(backend)
    for row in queries:
        started = time.perf_counter()
        if mode == "hybrid" and kb.name != "local":
            text = conversation_query(row["query"]).text
            results = kb.search(text, k=depth, sources=sources)
        else:
            results = search(row["query"], k=depth, sources=sources, mode=mode, **search_options)
        latencies.append((time.perf_counter() - started) * 1000)
        relevant = set(row["relevant"])
        ranked = [r.document_external_id for r in results]
        rank = next((i for i, d in enumerate(ranked, 1) if d in relevant), None)
        hits1 += bool(rank and rank <= 1)
        hits5 += bool(rank and rank <= 5)
        hitsk += bool(rank and rank <= k)
        rr += 1.0 / rank if rank and rank <= 10 else 0.0
    n = len(queries)
    return {
        "recall_at_1": round(hits1 / n, 4),
        "recall_at_5": round(hits5 / n, 4),
        "recall_at_k": round(hitsk / n, 4),
        "k": k,
        "mrr_at_10": round(rr / n, 4),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "n": n,
        "unanswerable": unanswerable,
        "mode": mode,
    }


def evaluate_drafts(
    queries: list[dict[str, Any]],
    *,
    source: str | None = None,
    channel: str = "email",
    drafter: str = "local",
) -> dict[str, Any]:
    """Reply drafts as the ticket page builds them (same retrieval, gate and composer):
    ``coverage`` = share of queries that get a draft, ``citation_precision`` = share of
    drafts whose first citation is a relevant document; ``recall_at_1`` (what drafting
    every query would give) and ms per draft for comparison. Those are over the ``n``
    queries with a relevant document; the ``no_answer_n`` without one (an empty
    ``relevant`` list) give ``no_answer_drafted``: the share of them that still got a
    draft, from an article that does not answer them (None when there are none)."""
    from knowledge.conversation import CUSTOMER, Turn
    from knowledge.drafts import CANDIDATES, draft_compose, get_drafter
    from knowledge.selectors import kb_search_conversation

    sources = [source] if source else None
    composer = get_drafter(drafter)
    offered = correct = top1 = 0
    no_answer_n = no_answer_offered = 0
    reasons: dict[str, int] = {}
    latencies = []
    for row in queries:
        query = row["query"]
        turns = [Turn(CUSTOMER, query)] if isinstance(query, str) else list(query)
        started = time.perf_counter()
        results = kb_search_conversation(turns, k=CANDIDATES, sources=sources, record=False)
        draft = draft_compose(turns, results, channel=channel, drafter=composer)
        latencies.append((time.perf_counter() - started) * 1000)
        relevant = set(row["relevant"])
        if not relevant:  # the knowledge base has no answer: any draft is a wrong one
            no_answer_n += 1
            no_answer_offered += draft.offered
            continue
        top1 += bool(results and results[0].document_external_id in relevant)
        if draft.offered:
            offered += 1
            correct += draft.citations[0].external_id in relevant
        else:
            reasons[draft.gate.reason] = reasons.get(draft.gate.reason, 0) + 1
    n = len(queries) - no_answer_n
    return {
        "coverage": round(offered / n, 4) if n else None,
        "citation_precision": round(correct / offered, 4) if offered else None,
        "drafts": offered,
        "correct_first_citations": correct,
        "recall_at_1": round(top1 / n, 4) if n else None,
        "no_draft_reasons": dict(sorted(reasons.items())),
        "no_answer_n": no_answer_n,
        "no_answer_drafts": no_answer_offered,
        "no_answer_drafted": round(no_answer_offered / no_answer_n, 4) if no_answer_n else None,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "n": n,
        "channel": channel,
    }
