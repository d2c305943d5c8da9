"""Hybrid retrieval on PostgreSQL: pgvector cosine similarity plus full-text ranking.

Both retrievers return candidate chunks; scores are aggregated per document (a document's
score is its best chunk's, so the title vector and the passage vectors compete) and fused:

    score = cosine + TEXT_WEIGHT * (text_rank / best_text_rank_in_candidates)

Full text only nudges the order: plain reciprocal rank fusion lets a keyword match outrank a
clearly better semantic match, and on StackFAQ it scored below the vectors alone (see
docs/knowledge.md for the measurements behind the weight).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString

from knowledge.embeddings import get_embedder

TEXT_WEIGHT = 0.02  # measured on StackFAQ: 0.01-0.03 beat vectors alone, 0.05+ fall below
CANDIDATES = 50
MODES = ("hybrid", "vector", "text")
_MARK_START, _MARK_END = "\x02", "\x03"
_MARKED = re.compile(f"{_MARK_START}(.*?){_MARK_END}", re.DOTALL)
_SENTINELS = re.compile(f"[{_MARK_START}{_MARK_END}]")


def highlight_html(headline: str) -> SafeString:
    """HTML for a passage whose matched terms sit between the mark sentinels.

    Every piece of text is escaped; the only markup is ``<mark>`` built here, so a passage
    from any backend (raw text from Bedrock, a document with ``<script>`` in it) renders as
    text. Stray sentinels in the document itself are dropped.
    """
    text = re.sub(r"\s+", " ", headline).strip()
    pieces: list[SafeString] = []
    position = 0
    for match in _MARKED.finditer(text):
        pieces.append(escape(_SENTINELS.sub("", text[position : match.start()])))
        pieces.append(format_html("<mark>{}</mark>", _SENTINELS.sub("", match.group(1))))
        position = match.end()
    pieces.append(escape(_SENTINELS.sub("", text[position:])))
    return format_html_join("", "{}", ((piece,) for piece in pieces))


@dataclass
class SearchResult:
    document_id: int | None
    document_external_id: str
    title: str
    url: str
    source: str
    chunk_id: int | str
    heading_path: str
    text: str
    headline: str  # plain text; matched terms between the _MARK_START/_MARK_END sentinels
    score: float
    vector_score: float | None = None
    text_score: float | None = None

    @property
    def snippet_html(self) -> SafeString:
        """The headline as HTML, escaped, with the matched terms in ``<mark>``."""
        return highlight_html(self.headline)

    @property
    def snippet(self) -> str:
        """The API's ``snippet``: the same HTML as a plain string."""
        return str(self.snippet_html)

    def as_dict(self) -> dict[str, Any]:
        return {
            "document": {
                "id": self.document_id,
                "external_id": self.document_external_id,
                "title": self.title,
                "url": self.url,
                "source": self.source,
            },
            "chunk": {"id": self.chunk_id, "heading_path": self.heading_path, "text": self.text},
            "score": round(self.score, 6),
            "vector_score": None if self.vector_score is None else round(self.vector_score, 6),
            "text_score": None if self.text_score is None else round(self.text_score, 6),
            "snippet": self.snippet,
        }


def _filters(sources: Sequence[str] | None, tags: Sequence[str] | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if sources:
        sql += " AND c.source_id IN (SELECT id FROM knowledge_knowledgesource WHERE name = ANY(%s))"
        params.append(list(sources))
    if tags:
        sql += " AND c.document_id IN (SELECT id FROM knowledge_document WHERE tags ?| %s)"
        params.append(list(tags))
    return sql, params


def _vector_candidates(
    cursor: Any, vector: np.ndarray, limit: int, where: str, params: list[Any]
) -> list[tuple[int, int, str, float]]:
    literal = "[" + ",".join(f"{x:.6f}" for x in vector.tolist()) + "]"
    cursor.execute("SET hnsw.ef_search = %s", [max(int(settings.KB_HNSW_EF_SEARCH), limit)])
    if where:
        # Filtered HNSW scans keep walking the graph until enough rows pass the filter.
        cursor.execute("SET hnsw.iterative_scan = relaxed_order")
    cursor.execute(
        "SELECT c.id, c.document_id, c.kind, 1 - (c.embedding <=> %s::vector) AS sim "
        "FROM knowledge_chunk c WHERE c.embedding IS NOT NULL" + where + " "
        "ORDER BY c.embedding <=> %s::vector LIMIT %s",
        [literal, *params, literal, limit],
    )
    rows = cursor.fetchall()
    if where:
        cursor.execute("RESET hnsw.iterative_scan")
    return [(r[0], r[1], r[2], float(r[3])) for r in rows]


_TSQUERY = "replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')"


def _text_candidates(
    cursor: Any, query: str, limit: int, where: str, params: list[Any]
) -> list[tuple[int, int, str, float]]:
    # Any-term match (OR): conversational queries rarely contain every word of the article.
    cursor.execute(
        "WITH q AS (SELECT CASE WHEN " + _TSQUERY + " = '' THEN NULL "
        "ELSE to_tsquery('english', " + _TSQUERY + ") END AS tsq) "
        "SELECT c.id, c.document_id, c.kind, ts_rank_cd(c.search_vector, q.tsq, 1) AS rank "
        "FROM knowledge_chunk c, q WHERE q.tsq IS NOT NULL AND c.search_vector @@ q.tsq"
        + where
        + " ORDER BY rank DESC LIMIT %s",
        [query, query, *params, limit],
    )
    return [(r[0], r[1], r[2], float(r[3])) for r in cursor.fetchall()]


def _text_scores_for_documents(
    cursor: Any, query: str, doc_ids: list[int]
) -> list[tuple[int, int, str, float]]:
    """Full-text ranks (any-term query) of every chunk of the given documents."""
    if not doc_ids:
        return []
    cursor.execute(
        "WITH q AS (SELECT CASE WHEN " + _TSQUERY + " = '' THEN NULL "
        "ELSE to_tsquery('english', " + _TSQUERY + ") END AS tsq) "
        "SELECT c.id, c.document_id, c.kind, ts_rank_cd(c.search_vector, q.tsq, 1) "
        "FROM knowledge_chunk c, q WHERE q.tsq IS NOT NULL AND c.document_id = ANY(%s) "
        "AND c.search_vector @@ q.tsq",
        [query, query, doc_ids],
    )
    return [(r[0], r[1], r[2], float(r[3])) for r in cursor.fetchall()]


def _strict_text_candidates(
    cursor: Any, query: str, limit: int, where: str, params: list[Any]
) -> list[tuple[int, int, str, float]]:
    """Chunks containing every query term (cheap: an AND query matches few rows)."""
    cursor.execute(
        "WITH q AS (SELECT plainto_tsquery('english', %s) AS tsq) "
        "SELECT c.id, c.document_id, c.kind, ts_rank_cd(c.search_vector, q.tsq, 1) AS rank "
        "FROM knowledge_chunk c, q WHERE q.tsq::text <> '' AND c.search_vector @@ q.tsq"
        + where
        + " ORDER BY rank DESC LIMIT %s",
        [query, *params, limit],
    )
    return [(r[0], r[1], r[2], float(r[3])) for r in cursor.fetchall()]


def _snippets(cursor: Any, query: str, chunk_ids: list[int]) -> dict[int, str]:
    if not chunk_ids:
        return {}
    options = f"StartSel={_MARK_START}, StopSel={_MARK_END}, MaxWords=35, MinWords=15"
    cursor.execute(
        "WITH q AS (SELECT CASE WHEN " + _TSQUERY + " = '' THEN NULL "  # noqa: S608
        "ELSE to_tsquery('english', " + _TSQUERY + ") END AS tsq) "
        "SELECT c.id, CASE WHEN q.tsq IS NULL THEN left(c.text, 240) "
        "ELSE ts_headline('english', c.text, q.tsq, %s) END FROM knowledge_chunk c, q "
        "WHERE c.id = ANY(%s)",
        [query, query, options, chunk_ids],
    )
    return {row[0]: row[1] for row in cursor.fetchall()}


@dataclass
class Ranking:
    ranked: list[tuple[int, float]]  # (document id, fused score), best first
    best_body: dict[int, tuple[float, int]]  # document id -> (score, chunk id) to show
    doc_vec: dict[int, float]
    doc_text: dict[int, float]


def rank_documents(
    query: str,
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    query_vector: np.ndarray | None = None,
    candidates: int = CANDIDATES,
    text_weight: float | None = None,
    cursor: Any = None,
    redact_names: Sequence[str] = (),
) -> Ranking:
    """Rank documents (best chunk per document) by vectors, full text or both fused."""
    if mode not in MODES:
        raise ValueError(f"mode: one of {MODES}")
    if text_weight is None:
        text_weight = float(getattr(settings, "KB_TEXT_WEIGHT", TEXT_WEIGHT))
    if cursor is None:
        with connection.cursor() as own:
            return rank_documents(
                query,
                k=k,
                sources=sources,
                tags=tags,
                mode=mode,
                query_vector=query_vector,
                candidates=candidates,
                text_weight=text_weight,
                cursor=own,
                redact_names=redact_names,
            )
    where, params = _filters(sources, tags)
    limit = max(candidates, k * 4)
    doc_vec: dict[int, float] = {}
    doc_text: dict[int, float] = {}
    best_body: dict[int, tuple[float, int]] = {}
    text_rows: list[tuple[int, int, str, float]] = []
    if mode in ("hybrid", "vector"):
        if query_vector is None:
            query_vector = get_embedder().encode([query], redact_names=redact_names)[0]
        for chunk_id, doc_id, kind, sim in _vector_candidates(
            cursor, query_vector, limit, where, params
        ):
            doc_vec[doc_id] = max(doc_vec.get(doc_id, -1.0), sim)
            if kind == "body" and sim > best_body.get(doc_id, (-2.0, 0))[0]:
                best_body[doc_id] = (sim, chunk_id)
    if mode == "hybrid":
        # Full text re-scores the vector candidates' documents (plus the few chunks that
        # contain every query term) instead of ranking every any-term match: on 100k
        # chunks an any-term query matches tens of thousands of rows.
        strict = _strict_text_candidates(cursor, query, 20, where, params)
        text_rows = _text_scores_for_documents(
            cursor, query, sorted(set(doc_vec) | {r[1] for r in strict})
        )
    elif mode == "text":
        text_rows = _text_candidates(cursor, query, limit, where, params)
    if mode in ("hybrid", "text"):
        top = max((r[3] for r in text_rows), default=0.0) or 1.0
        for chunk_id, doc_id, kind, rank in text_rows:
            doc_text[doc_id] = max(doc_text.get(doc_id, 0.0), rank / top)
            if mode == "text" and kind == "body" and rank > best_body.get(doc_id, (-1.0, 0))[0]:
                best_body[doc_id] = (rank, chunk_id)
    scores: dict[int, float] = {}
    if mode == "vector":
        scores = dict(doc_vec)
    elif mode == "text":
        scores = dict(doc_text)
    else:
        floor = min(doc_vec.values(), default=0.0)  # text-only hits sit below every vector hit
        for doc_id in set(doc_vec) | set(doc_text):
            base = doc_vec.get(doc_id, floor)
            scores[doc_id] = base + text_weight * doc_text.get(doc_id, 0.0)
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    return Ranking(ranked, best_body, doc_vec, doc_text)


def search(
    query: str,
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    query_vector: np.ndarray | None = None,
    candidates: int = CANDIDATES,
    text_weight: float | None = None,
    redact_names: Sequence[str] = (),
) -> list[SearchResult]:
    """The ``k`` best documents for ``query``, each with its best passage and a snippet."""
    query = query.strip()
    if not query or k <= 0:
        return []
    with connection.cursor() as cursor:
        ranking = rank_documents(
            query,
            k=k,
            sources=sources,
            tags=tags,
            mode=mode,
            query_vector=query_vector,
            candidates=candidates,
            text_weight=text_weight,
            cursor=cursor,
            redact_names=redact_names,
        )
        return _results(
            cursor, query, ranking.ranked, ranking.best_body, ranking.doc_vec, ranking.doc_text
        )


def _results(
    cursor: Any,
    query: str,
    ranked: list[tuple[int, float]],
    best_body: dict[int, tuple[float, int]],
    doc_vec: dict[int, float],
    doc_text: dict[int, float],
) -> list[SearchResult]:
    from knowledge.models import Chunk

    if not ranked:
        return []
    doc_ids = [doc_id for doc_id, _ in ranked]
    missing = [d for d in doc_ids if d not in best_body]
    if missing:  # found through the title only: show the document's first passage
        for first in (
            Chunk.objects.filter(document_id__in=missing, kind=Chunk.Kind.BODY)
            .order_by("document_id", "position")
            .distinct("document_id")
            .only("id", "document_id")
        ):
            best_body[first.document_id] = (0.0, first.pk)
    chunk_ids = [best_body[d][1] for d in doc_ids if d in best_body]
    heavy = ("embedding", "search_vector")  # never needed here; vectors are slow to decode
    chunks = {
        c.pk: c
        for c in Chunk.objects.filter(pk__in=chunk_ids)
        .select_related("document", "document__source")
        .defer(*heavy)
    }
    no_body = [d for d in doc_ids if d not in best_body]
    title_only = (
        {
            c.document_id: c
            for c in Chunk.objects.filter(document_id__in=no_body)
            .select_related("document", "document__source")
            .defer(*heavy)
            .order_by("-position")
        }
        if no_body
        else {}
    )
    snippets = _snippets(cursor, query, [*chunk_ids, *(c.pk for c in title_only.values())])
    results = []
    for doc_id, score in ranked:
        chunk: Chunk | None = (
            chunks.get(best_body[doc_id][1]) if doc_id in best_body else title_only.get(doc_id)
        )
        if chunk is None:
            continue
        document = chunk.document
        results.append(
            SearchResult(
                document_id=document.pk,
                document_external_id=document.external_id,
                title=document.title,
                url=document.url,
                source=document.source.name,
                chunk_id=chunk.pk,
                heading_path=chunk.heading_path,
                text=chunk.text,
                headline=snippets.get(chunk.pk, chunk.text[:240]),
                score=score,
                vector_score=doc_vec.get(doc_id),
                text_score=doc_text.get(doc_id),
            )
        )
    return results
