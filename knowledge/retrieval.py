"""Hybrid retrieval on PostgreSQL: pgvector cosine similarity plus full-text ranking.

Both retrievers return candidate chunks; scores are aggregated per document (a document's
score is its best chunk's, so the title vector and the passage vectors compete) and fused:

    score = cosine + TEXT_WEIGHT * (text_rank / best_text_rank_in_candidates)

Full text only nudges the order: plain reciprocal rank fusion lets a keyword match outrank a
clearly better semantic match, and on StackFAQ it scored below the vectors alone (see
docs/knowledge.md for the measurements behind the weight).

Conversation queries (``knowledge.conversation.ConversationQuery``) add two things:

- the query vector is the focus turn's embedding plus ``context_weight`` times the unit
  direction of the context turns' weighted embeddings (one ANN search; the cosine to that
  vector is a fixed blend of the cosines to the focus and to the context);
- an **entity** signal: the context's lexemes that are rare among the knowledge base's
  titles (in at most ``KB_ENTITY_MAX_DF`` of them, or at most 3: product, place and
  order names, not "price" or "address") are carried; documents whose title holds them
  join the candidates, and a document scores the idf-weighted share of its title's rare
  lexemes that the conversation named, each counted with the weight (recency) of the
  turn that named it. Names that only the articles' text holds (every hotel's article
  titled "Parking") count too: lexemes no title holds and few passages do (at most
  ``KB_ENTITY_MAX_DF`` of them, and ``BODY_NAME_MAX_CHUNKS``); a document whose passage
  holds them scores the idf-weighted share of everything the conversation named that
  the passage holds, and keeps the better of its title and passage scores. What the names
  add is ``SearchResult.named_score``; the draft and suggestion floors read the score
  without it (``SearchResult.fit``):

    score = cosine + TEXT_WEIGHT * text_rank / best + ENTITY_WEIGHT * entity_share
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString

from knowledge import embeddings
from knowledge.conversation import ConversationQuery, Turn, build_query
from knowledge.embeddings import Embedder
from knowledge.parsing import without_example_phrasings
from support.lru import BoundedLRU

logger = logging.getLogger(__name__)

TEXT_WEIGHT = 0.02  # measured on StackFAQ: 0.01-0.03 beat vectors alone, 0.05+ fall below
ENTITY_WEIGHT = 0.5
ENTITY_MAX_DF = 0.02  # a lexeme in at most 2% of titles is "distinctive"
ENTITY_MIN_DF = 3  # ... and one in at most 3 titles always is (small knowledge bases)
ENTITY_MAX_TERMS = 24
# A turn that would carry more names than this is describing (an agent's step-by-step
# reply), not naming: none of its words count as names. Chosen on MWOZ-FAQ dev (unchanged at
# 12, 0.4 points lower at 8) and the demo's tickets (0.832 -> 0.851 top article right).
ENTITY_MAX_PER_TURN = 12
ENTITY_CANDIDATES = 100  # best-named documents added to the vector candidates
ENTITY_SCAN_LIMIT = 5000  # titles read per query at most (rare terms match few)
BODY_NAME_MAX_CHUNKS = 200  # passages read per lexeme at most; held by more: not a name
BODY_NAMES_CACHED = 20_000  # lexemes whose passages a process remembers
# ... and passages in all (a customer's message can hold many words each held by ~200
# passages: the memory stays bounded, ~25 MB at most)
BODY_NAME_ROWS_CACHED = 200_000
NAME_STATS_SECONDS = 600
CANDIDATES = 50
EXACT_SCAN_MAX = 2000  # chunks to rank at most for an exact scan instead of the HNSW index
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


def framed(headline: str, text: str) -> str:
    """The headline with "…" where it cuts its passage: ``ts_headline`` picks a window of
    words that can open mid-sentence or inside a quotation ('Billing" or "Invoices"
    section'), which reads as a mistake unless the cut shows."""
    plain = " ".join(_SENTINELS.sub("", headline).split())
    whole = " ".join(text.split())
    at = whole.find(plain) if plain else -1
    if at < 0 or plain == whole:
        return headline
    opening = "… " if at > 0 else ""
    closing = " …" if at + len(plain) < len(whole) else ""
    return opening + headline.strip() + closing


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
    # The part of ``score`` the conversation's names added (0 for a one-string query).
    named_score: float = 0.0

    @property
    def fit(self) -> float:
        """How well the article fits the question itself: ``score`` without what the
        names added. The draft and suggestion floors read this, so an article that holds
        the name a conversation mentioned does not pass for an answer to any question;
        the names still order the articles that do fit."""
        return self.score - self.named_score

    @property
    def answer_text(self) -> str:
        """The passage as an agent inserts it: without the article's example phrasings."""
        return shown_text(self.text)

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
            "named_score": round(self.named_score, 6),
            "fit": round(self.fit, 6),
            "snippet": self.snippet,
        }


def _source_ids(cursor: Any, sources: Sequence[str] | None) -> list[int] | None:
    """The ids of the named sources (None: no filter; empty: none of them exists)."""
    if not sources:
        return None
    cursor.execute("SELECT id FROM knowledge_knowledgesource WHERE name = ANY(%s)", [list(sources)])
    return [int(row[0]) for row in cursor.fetchall()]


def _filters(source_ids: Sequence[int] | None, tags: Sequence[str] | None) -> tuple[str, list[Any]]:
    """SQL conditions on ``c`` (chunks). The sources go in as their ids, not a sub-select on
    their names: the planner then reads the ids' own row counts (a 658-chunk source among
    100,000 chunks: the source index, 8 ms; through the sub-select it assumed an average
    source and scanned the whole table, 79 ms)."""
    sql = ""
    params: list[Any] = []
    if source_ids is not None:
        sql += " AND c.source_id = ANY(%s)"
        params.append(list(source_ids))
    if tags:
        sql += " AND c.document_id IN (SELECT id FROM knowledge_document WHERE tags ?| %s)"
        params.append(list(tags))
    return sql, params


def _vector_candidates(
    cursor: Any,
    vector: np.ndarray,
    limit: int,
    where: str,
    params: list[Any],
    *,
    exact: bool = False,
) -> list[tuple[int, int, str, float]]:
    """The ``limit`` chunks nearest ``vector`` (id, document id, kind, cosine).

    ``exact`` (the caller knows the rows to rank are few): one exact scan, no index."""
    literal = "[" + ",".join(f"{x:.6f}" for x in vector.tolist()) + "]"
    select = (
        "SELECT c.id, c.document_id, c.kind, 1 - (c.embedding <=> %s::vector) AS sim "
        "FROM knowledge_chunk c WHERE c.embedding IS NOT NULL" + where + " "
    )
    # ``+ 0``: an expression the HNSW index cannot order by, so the planner ranks exactly.
    exact_sql = select + "ORDER BY (c.embedding <=> %s::vector) + 0 LIMIT %s"
    if exact:
        cursor.execute(exact_sql, [literal, *params, literal, limit])
        return [(r[0], r[1], r[2], float(r[3])) for r in cursor.fetchall()]
    # The scan keeps walking the graph until ``limit`` rows pass the filter *and* are
    # visible: chunks replaced by a re-ingestion stay in the index until VACUUM, and a plain
    # scan returns their entries (then drops them), so near duplicates of live chunks could
    # crowd the live ones out of the ``ef_search`` candidates. Every index scan here sets
    # both, so they are left set for the session.
    cursor.execute(
        "SELECT set_config('hnsw.ef_search', %s, false), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', false)",
        [str(max(int(settings.KB_HNSW_EF_SEARCH), limit))],
    )
    cursor.execute(
        select + "ORDER BY c.embedding <=> %s::vector LIMIT %s", [literal, *params, literal, limit]
    )
    rows = cursor.fetchall()
    if len(rows) < limit:
        # Fewer rows than asked: the filtered part is that small, or the iterative scan hit
        # its bound (``hnsw.max_scan_tuples``) among many replaced chunks after a large
        # re-ingestion. The exact scan is right in both cases.
        cursor.execute(exact_sql, [literal, *params, literal, limit])
        rows = cursor.fetchall()
    return [(r[0], r[1], r[2], float(r[3])) for r in rows]


def _few_rows(cursor: Any, source_ids: Sequence[int] | None, tags: Sequence[str] | None) -> bool:
    """Are the chunks to rank few enough (``EXACT_SCAN_MAX``) for an exact scan, which is
    then faster than the index? The whole knowledge base's size comes from this process's
    cached counts; a source filter's from a bounded count on the source index. A tag
    filter's is not counted (no index answers it cheaply): the index scan then."""
    if tags:
        return False
    if source_ids is None:
        return sum(stored_embedders.get().values()) <= EXACT_SCAN_MAX
    cursor.execute(
        "SELECT count(*) FROM (SELECT 1 FROM knowledge_chunk c WHERE c.source_id = ANY(%s) "
        "LIMIT %s) AS few",
        [list(source_ids), EXACT_SCAN_MAX + 1],
    )
    return int(cursor.fetchone()[0]) <= EXACT_SCAN_MAX


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


def shown_text(text: str) -> str:
    """What a passage shows and inserts: its text without the article's example phrasings
    (they help search find it; they are no answer), or all of it when that is all it is."""
    return without_example_phrasings(text) or text


def _snippets(cursor: Any, query: str, texts: dict[int, str]) -> dict[int, str]:
    """Each passage's headline (``texts``: chunk id -> the text to show)."""
    if not texts:
        return {}
    ids = list(texts)
    options = f"StartSel={_MARK_START}, StopSel={_MARK_END}, MaxWords=35, MinWords=15"
    cursor.execute(
        "WITH q AS (SELECT CASE WHEN " + _TSQUERY + " = '' THEN NULL "
        "ELSE to_tsquery('english', " + _TSQUERY + ") END AS tsq) "
        "SELECT x.i, CASE WHEN q.tsq IS NULL THEN left(x.t, 240) "
        "ELSE ts_headline('english', x.t, q.tsq, %s) END "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i), q",
        [query, query, options, [texts[i] for i in ids]],
    )
    return {ids[int(row[0]) - 1]: row[1] for row in cursor.fetchall()}


@dataclass
class Ranking:
    ranked: list[tuple[int, float]]  # (document id, fused score), best first
    best_body: dict[int, tuple[float, int]]  # document id -> (score, chunk id) to show
    doc_vec: dict[int, float]
    doc_text: dict[int, float]
    doc_entity: dict[int, float] = field(default_factory=dict)
    entity_weight: float = 0.0  # what a document's entity score counts in its fused score


# --- conversation queries -------------------------------------------------------------


TURN_VECTORS_CACHED = 4096  # a ticket's earlier turns are embedded once per process
_TURN_VECTORS: BoundedLRU[tuple[str, str], np.ndarray] = BoundedLRU(lambda: TURN_VECTORS_CACHED)


def _encode_turns(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Embed turn texts, reusing this process's recent ones: when a ticket gets a new
    message only that message is new to the encoder."""
    keys = [(embedder.name, text) for text in texts]
    known = _TURN_VECTORS.get_many(keys)
    todo = sorted({key[1] for key in keys if key not in known})
    if todo:
        for text, vector in zip(todo, embedder.encode(todo), strict=True):
            known[(embedder.name, text)] = vector
            _TURN_VECTORS.put((embedder.name, text), vector)
    return np.stack([known[key] for key in keys])


def conversation_vector(
    query: ConversationQuery,
    embedder: Embedder | None = None,
    *,
    redact_names: Sequence[str] = (),
) -> np.ndarray:
    """Focus embedding + context_weight * unit(weighted sum of context embeddings).

    ``redact_names``: the customer's names, for an embedder that sends text off-machine
    (such calls bypass the per-process turn cache: its key is the unredacted text)."""
    parts = query.parts
    embed_turns = int(getattr(settings, "KB_CONTEXT_EMBED_TURNS", 0))
    if embed_turns > 0:
        # Only the nearest context turns are embedded (the encoder is most of a first-seen
        # conversation's cost); names are still carried from all of them (entity_terms).
        parts = parts[: 1 + embed_turns]
    texts = [p.text for p in parts]
    if embedder is not None or redact_names:
        vectors = (embedder or get_query_embedder()).encode(texts, redact_names=redact_names)
    else:
        vectors = _encode_turns(get_query_embedder(), texts)
    focus: np.ndarray = vectors[0]
    if len(parts) == 1 or query.context_weight <= 0:
        return focus
    context = np.zeros_like(focus)
    for part, vector in zip(parts[1:], vectors[1:], strict=True):
        context += part.weight * vector
    norm = float(np.linalg.norm(context))
    if norm == 0:
        return focus
    combined = focus + query.context_weight * context / norm
    return (combined / np.linalg.norm(combined)).astype(np.float32)


NAME_STATS_VERSION_KEY = "kb-name-stats-version"
EMBEDDERS_VERSION_KEY = "kb-stored-embedders-version"
# The counts one process made for the current version, there for the others to take
# (``{"version", "counts", "counted_at"}``; it expires after ``EMBEDDERS_SECONDS``).
EMBEDDERS_COUNTS_KEY = "kb-stored-embedders-counts"
# The title statistics one process read for the current version, there for the others to
# take (``{"version", "total", "df", "computed_at"}``; it expires after
# ``NAME_STATS_SECONDS``). Up to tens of thousands of lexemes (~160 KiB with 12,400): read
# on its own, and only when the version changed, never in the versions' round trip.
NAME_STATS_KEY = "kb-name-stats"
EMBEDDERS_SECONDS = 60
LEGACY_EMBEDDER = "minilm"  # what a chunk from before ``Chunk.embedder`` was embedded with
VERSIONS_FRESH_SECONDS = 0.5  # a change another process signals is seen within this


class _Versions:
    """The shared version keys of this process's knowledge-base caches, read from the
    Django cache in one round trip and reused for ``VERSIONS_FRESH_SECONDS`` (a search
    asks five times; each read is a Redis round trip). A change this process signals is
    seen at once (the signal forgets the reading)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        """The version under ``key``; raises ``RedisError`` when the cache is down."""
        from django.core.cache import cache

        now = time.monotonic()
        with self._lock:
            if now - self._read_at <= VERSIONS_FRESH_SECONDS:
                return self._values.get(key)
        values = cache.get_many(
            [NAME_STATS_VERSION_KEY, EMBEDDERS_VERSION_KEY, EMBEDDERS_COUNTS_KEY]
        )
        with self._lock:
            self._values, self._read_at = values, now
        return values.get(key)

    def forget(self) -> None:
        with self._lock:
            self._read_at = -math.inf


versions = _Versions()


class _StoredEmbedders:
    """How many chunks each embedder's vectors are, cached per process; reloaded when
    ingestion or ``kb_reembed`` bumps ``EMBEDDERS_VERSION_KEY`` (or every
    ``EMBEDDERS_SECONDS``). One process counts (an index-only count over
    ``kb_chunk_embedder``, 10-25 ms at 100,000 chunks) and leaves its counts under
    ``EMBEDDERS_COUNTS_KEY``; the others take them from the round trip that reads the
    versions, so a change or the minute's refresh costs one count, not one per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = -math.inf
        self._version: Any = None
        self.counts: dict[str, int] = {}

    def get(self) -> dict[str, int]:
        from redis.exceptions import RedisError

        try:
            version = versions.get(EMBEDDERS_VERSION_KEY)
            shared = versions.get(EMBEDDERS_COUNTS_KEY)
        except RedisError:  # search must not fail with the cache: fall back to the TTL
            version, shared = self._version, None
        with self._lock:
            if time.monotonic() - self._loaded_at > EMBEDDERS_SECONDS or version != self._version:
                taken = _shared_counts(shared, version)
                if taken is not None:
                    self.counts, age = taken
                    self._loaded_at = time.monotonic() - age
                else:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT embedder, count(*) FROM knowledge_chunk GROUP BY embedder"
                        )
                        self.counts = {str(name): int(n) for name, n in cursor.fetchall()}
                    self._loaded_at = time.monotonic()
                    if not connection.in_atomic_block:  # never counts a rollback may undo
                        _shared_counts_leave(self.counts, version)
                self._version = version
            return dict(self.counts)

    def forget(self) -> None:
        with self._lock:
            self._loaded_at = -math.inf
            self._version = None
            self.counts = {}


def _shared_age(shared: Any, version: Any, *, stamp: str, max_age: float) -> float | None:
    """The age in seconds of ``shared``, what another process read and left in the cache
    for the others, when it is for ``version`` and fresh (read less than ``max_age``
    seconds ago, by ``shared[stamp]``); ``None`` otherwise. What was left for another
    version is never taken, nor what was read from another database (two deployments, or
    two benches, sharing one Redis: the version alone does not tell them apart)."""
    if not isinstance(shared, dict) or shared.get("version") != version:
        return None
    if shared.get("database") != _database_name():
        return None
    made = shared.get(stamp)
    if not isinstance(made, int | float):
        return None
    age = max(0.0, time.time() - float(made))
    return age if age < max_age else None


def _database_name() -> str:
    from django.db import connection

    return str(connection.settings_dict.get("NAME") or "")


def _shared_leave(key: str, value: dict[str, Any], *, timeout: float, what: str) -> None:
    """Leave what this process read (``value``, with its version and time) for the others
    (best effort: without the cache each process reads for itself)."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    value = {**value, "database": _database_name()}
    try:
        cache.set(key, value, timeout=timeout)
    except RedisError:
        logger.warning("kb %s: could not share them", what, exc_info=True)


def _shared_counts(shared: Any, version: Any) -> tuple[dict[str, int], float] | None:
    """Another process's counts for ``version`` and their age in seconds; ``None`` when
    there are none, they are for another version or are no longer fresh."""
    age = _shared_age(shared, version, stamp="counted_at", max_age=EMBEDDERS_SECONDS)
    if age is None or not isinstance(shared.get("counts"), dict):
        return None
    return {str(name): int(n) for name, n in shared["counts"].items()}, age


def _shared_counts_leave(counts: dict[str, int], version: Any) -> None:
    """Leave this process's fresh counts for the others."""
    value = {"version": version, "counts": counts, "counted_at": time.time()}
    _shared_leave(EMBEDDERS_COUNTS_KEY, value, timeout=EMBEDDERS_SECONDS, what="stored embedders")


stored_embedders = _StoredEmbedders()


def stored_embedder() -> str:
    """The embedder most stored chunks were embedded with (chunks of unknown origin count
    as ``LEGACY_EMBEDDER``); the configured one when the knowledge base is empty or the
    count is tied."""
    configured = embeddings.passages_embedder_name()
    counts: dict[str, int] = {}
    for name, n in stored_embedders.get().items():
        key = name or LEGACY_EMBEDDER
        counts[key] = counts.get(key, 0) + n
    if not counts or counts.get(configured, 0) >= max(counts.values()):
        return configured
    return max(sorted(counts), key=lambda name: counts[name])


def stored_embedders_invalidate() -> None:
    """Tell every process that chunks were (re-)embedded."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    try:
        cache.set(EMBEDDERS_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except RedisError:  # the counts then refresh within EMBEDDERS_SECONDS
        logger.warning("kb stored embedders: could not signal the change", exc_info=True)
    versions.forget()


_mismatch_logged: set[tuple[str, str]] = set()


def get_query_embedder() -> Embedder:
    """The query embedder for the vectors actually stored: while most chunks still hold
    another embedder's vectors than ``KB_EMBEDDER`` gives (the setting changed, ``kb_reembed``
    not run or not finished), queries are embedded like them, so search neither fails nor
    ranks in the wrong space; a warning says so once per process."""
    stored = stored_embedder()
    configured = embeddings.passages_embedder_name()
    embedder = embeddings.get_query_embedder(passages=stored)
    if stored != configured and (stored, configured) not in _mismatch_logged:
        _mismatch_logged.add((stored, configured))
        logger.warning(
            "knowledge base: most chunks were embedded with %s, KB_EMBEDDER gives %s; "
            "queries use %s until `python manage.py kb_reembed` has re-embedded them",
            stored,
            configured,
            embedder.name,
        )
    return embedder


def name_stats_invalidate() -> None:
    """Tell every process that the knowledge base changed (ingestion and deletion call
    this): the statistics names are told by are read again."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    try:
        cache.set(NAME_STATS_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except RedisError:  # the statistics then refresh within NAME_STATS_SECONDS
        logger.warning("kb name statistics: could not signal the change", exc_info=True)
    versions.forget()


class _NameStats:
    """What tells names from ordinary words: the document frequency of each lexeme among
    title chunks, and the passages (body chunks) holding the lexemes searches asked about,
    cached per process and reloaded when ``name_stats_invalidate`` bumps the shared
    version (or every ``NAME_STATS_SECONDS``).

    One process reads the title statistics after a change (``ts_stat`` over the title
    chunks and their count, ~90 ms with 20,000 titles) and leaves them under
    ``NAME_STATS_KEY`` with their version; the others take them from there (3-4 ms), so a
    change costs one ``ts_stat``, not one per process. Never shared from inside a
    transaction (a rollback may undo what it read), nor while the cache is down.

    A lexeme more than ``BODY_NAME_MAX_CHUNKS`` passages hold ("room", "want") is never
    read: ``CommonLexeme`` lists them as counted after the last ingestion or deletion
    (reading them, up to 201 rows each, was most of what a process's first conversations
    cost). One the table does not list yet is read, found common, and remembered so."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = -math.inf
        self._version: Any = None
        self._generation = 0
        self.total = 0
        self.df: dict[str, int] = {}
        # lexeme -> (chunk id, document id) of the passages holding it (this version); none
        # for a lexeme too many passages hold. Bounded in lexemes and in passages.
        self._passages: BoundedLRU[str, tuple[tuple[int, int], ...]] = BoundedLRU(
            lambda: BODY_NAMES_CACHED, weight=len, max_weight=lambda: BODY_NAME_ROWS_CACHED
        )

    def forget(self) -> None:
        with self._lock:
            self._loaded_at = -math.inf
            self._version = None
            self.total = 0
            self.df = {}
        self.forget_passages()

    def forget_passages(self) -> None:
        """Forget the passages read for names (the next searches read them again)."""
        with self._lock:
            self._generation += 1
            self._passages.clear()

    def get(self, cursor: Any) -> _NameStats:
        from redis.exceptions import RedisError

        try:
            version = versions.get(NAME_STATS_VERSION_KEY)
            cached = True
        except RedisError:  # search must not fail with the cache: fall back to the TTL
            version, cached = self._version, False
        with self._lock:
            stale = time.monotonic() - self._loaded_at > NAME_STATS_SECONDS
            if stale or version != self._version:
                taken = _shared_name_stats(version) if cached else None
                if taken is not None:
                    self.total, self.df, age = taken
                    self._loaded_at = time.monotonic() - age
                else:
                    cursor.execute(
                        "SELECT word, ndoc FROM ts_stat("
                        "'SELECT search_vector FROM knowledge_chunk WHERE kind = ''title''')"
                    )
                    self.df = {word: int(ndoc) for word, ndoc in cursor.fetchall()}
                    cursor.execute("SELECT count(*) FROM knowledge_chunk WHERE kind = 'title'")
                    self.total = int(cursor.fetchone()[0])
                    self._loaded_at = time.monotonic()
                    if cached and not connection.in_atomic_block:  # never a rollback's
                        _shared_name_stats_leave(self.total, self.df, version)
                self._passages.clear()  # their chunk ids may be gone
                self._generation += 1
                self._version = version
        return self

    def passages(
        self, cursor: Any, lexemes: Sequence[str]
    ) -> dict[str, tuple[tuple[int, int], ...]]:
        """The passages (chunk id, document id) holding each lexeme that at most
        ``BODY_NAME_MAX_CHUNKS`` passages hold; the others are left out. Lexemes not asked
        about since the knowledge base last changed cost one query for all of them: those
        ``CommonLexeme`` lists are not read, the others are read on the full-text index
        (bounded: one more than the limit says "too many")."""
        wanted = list(dict.fromkeys(lexemes))
        with self._lock:
            generation = self._generation
            known = self._passages.get_many(wanted)
        todo = [lexeme for lexeme in wanted if lexeme not in known]
        if todo:
            cursor.execute(
                "SELECT t.i, m.id, m.document_id "
                "FROM unnest(%s::text[], %s::tsquery[]) WITH ORDINALITY AS t(w, q, i) "
                "LEFT JOIN knowledge_commonlexeme cl ON cl.lexeme = t.w AND cl.passages > %s "
                "LEFT JOIN LATERAL (SELECT c.id, c.document_id FROM knowledge_chunk c "
                "WHERE cl.lexeme IS NULL AND c.kind = 'body' AND c.search_vector @@ t.q "
                "LIMIT %s) AS m ON true",
                [
                    todo,
                    [_tsquery_any([lexeme]) for lexeme in todo],
                    BODY_NAME_MAX_CHUNKS,
                    BODY_NAME_MAX_CHUNKS + 1,
                ],
            )
            found: dict[str, list[tuple[int, int]]] = {lexeme: [] for lexeme in todo}
            for index, chunk_id, doc_id in cursor.fetchall():
                if chunk_id is not None:
                    found[todo[index - 1]].append((int(chunk_id), int(doc_id)))
            read = {  # too many passages: remembered as none
                lexeme: tuple(rows) if len(rows) <= BODY_NAME_MAX_CHUNKS else ()
                for lexeme, rows in found.items()
            }
            known.update(read)
            with self._lock:
                if generation == self._generation:  # not read before a change
                    for lexeme, rows in read.items():
                        self._passages.put(lexeme, rows)
        return {lexeme: rows for lexeme, rows in known.items() if rows}


def _shared_name_stats(version: Any) -> tuple[int, dict[str, int], float] | None:
    """Another process's title statistics for ``version`` (title chunks, document
    frequency per lexeme) and their age in seconds; ``None`` when there are none, they are
    for another version or no longer fresh, or the cache is down. The dict is used as
    unpickled (converting each entry would cost as much again)."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    try:
        shared = cache.get(NAME_STATS_KEY)
    except RedisError:
        logger.warning("kb name statistics: could not read the shared ones", exc_info=True)
        return None
    age = _shared_age(shared, version, stamp="computed_at", max_age=NAME_STATS_SECONDS)
    if age is None:
        return None
    total, df = shared.get("total"), shared.get("df")
    if not isinstance(total, int) or not isinstance(df, dict):
        return None
    return total, df, age


def _shared_name_stats_leave(total: int, df: dict[str, int], version: Any) -> None:
    """Leave this process's fresh title statistics for the others."""
    value = {"version": version, "total": total, "df": df, "computed_at": time.time()}
    _shared_leave(NAME_STATS_KEY, value, timeout=NAME_STATS_SECONDS, what="name statistics")


name_stats = _NameStats()


def name_stats_forget() -> None:
    """Drop this process's cached name statistics and stored-embedder counts (the next
    search reloads them)."""
    versions.forget()
    stored_embedders.forget()
    _mismatch_logged.clear()
    name_stats.forget()


def _lexemes(cursor: Any, texts: list[str]) -> list[list[str]]:
    cursor.execute(
        "SELECT tsvector_to_array(to_tsvector('english', t)) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i) ORDER BY i",
        [texts],
    )
    return [list(row[0]) for row in cursor.fetchall()]


def _distinctive_limit(stats: _NameStats, max_df: float | None = None) -> float:
    if max_df is None:
        max_df = float(getattr(settings, "KB_ENTITY_MAX_DF", ENTITY_MAX_DF))
    return max(float(ENTITY_MIN_DF), max_df * stats.total)


@dataclass
class Names:
    """What a conversation names: each carried lexeme's turn weight (``terms``), its idf
    among titles when titles hold it rarely (``title_idf``), and the passages holding it
    with its idf among passages when few passages do (``passages``, ``passage_idf``).
    Which of them count by their passages depends on the titles searched
    (``_entity_matches``)."""

    terms: dict[str, float] = field(default_factory=dict)
    title_idf: dict[str, float] = field(default_factory=dict)
    passage_idf: dict[str, float] = field(default_factory=dict)
    passages: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.terms)


def entity_terms(cursor: Any, query: ConversationQuery, *, max_df: float | None = None) -> Names:
    """The context's distinctive lexemes with the weight of the newest context turn that
    holds each: rare among titles, or held by no title and few passages (the passages of
    title-rare ones are looked up too: a search filtered to titles that do not hold them
    scores them by their passages). The focus is left out: its own words are searched by
    the vector and full-text sides, and a question's generic words ("postcode") that a
    few titles happen to hold would otherwise pass for names. A turn that would carry more
    than ``ENTITY_MAX_PER_TURN`` of them carries none (it describes, it does not name)."""
    stats = name_stats.get(cursor)
    context = query.parts[1:]
    if not context:
        return Names()
    if max_df is None:
        max_df = float(getattr(settings, "KB_ENTITY_MAX_DF", ENTITY_MAX_DF))
    limit = _distinctive_limit(stats, max_df)
    seen: dict[str, float] = {}
    per_part: list[tuple[float, set[str]]] = []
    for part, lexemes in zip(context, _lexemes(cursor, [p.text for p in context]), strict=True):
        rare = {lexeme for lexeme in lexemes if stats.df.get(lexeme, 0) <= limit}
        per_part.append((part.weight, rare))  # common among titles: never a name
        for lexeme in rare:
            seen[lexeme] = max(seen.get(lexeme, 0.0), part.weight)
    if not seen:
        return Names()
    names = Names()
    for lexeme in seen:
        df = stats.df.get(lexeme, 0)
        if df:
            names.title_idf[lexeme] = math.log(1 + stats.total / df)
    body_total = max(sum(stored_embedders.get().values()) - stats.total, 1)
    body_limit = min(float(BODY_NAME_MAX_CHUNKS), max(float(ENTITY_MIN_DF), max_df * body_total))
    for lexeme, rows in stats.passages(cursor, list(seen)).items():
        if len(rows) <= body_limit:
            names.passages[lexeme] = rows
            names.passage_idf[lexeme] = math.log(1 + body_total / len(rows))

    carried = [t for t in seen if t in names.title_idf or t in names.passage_idf]
    held = set(carried)
    if any(len(rare & held) > ENTITY_MAX_PER_TURN for _, rare in per_part):
        seen = {}  # again, from the turns that name things
        for weight, rare in per_part:
            if len(rare & held) <= ENTITY_MAX_PER_TURN:
                for lexeme in rare & held:
                    seen[lexeme] = max(seen.get(lexeme, 0.0), weight)
        carried = [t for t in carried if t in seen]

    def strength(lexeme: str) -> float:
        return seen[lexeme] * names.title_idf.get(lexeme, names.passage_idf.get(lexeme, 0.0))

    strongest = set(sorted(carried, key=lambda t: (-strength(t), t))[:ENTITY_MAX_TERMS])
    names.terms = {t: seen[t] for t in carried if t in strongest}
    names.title_idf = {t: w for t, w in names.title_idf.items() if t in strongest}
    names.passage_idf = {t: w for t, w in names.passage_idf.items() if t in strongest}
    names.passages = {t: rows for t, rows in names.passages.items() if t in strongest}
    return names


def _tsquery_any(lexemes: Sequence[str]) -> str:
    """``'a' | 'b'`` for lexemes from customers' text: quotes doubled and backslashes
    escaped, as tsquery input reads them (a URL token such as ``x.com/a'b`` keeps its
    quote)."""
    return " | ".join(
        "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes
    )


def _entity_matches(
    cursor: Any,
    names: Names,
    where: str,
    params: list[Any],
    *,
    max_df: float | None = None,
) -> dict[int, float]:
    """Entity score of each document whose title or a passage holds a carried name.

    By the title: the share of the title's distinctive lexemes (idf-weighted) that the
    conversation named, each counted with the weight of the turn that named it. A title
    naming "Acorn Guest House" scores 1 when the agent said "Acorn" one turn ago; partial
    names score in proportion. By a passage, for names no title holds (every hotel's
    article titled "Parking", the hotel named in its text): the share of everything the
    conversation named (idf-weighted, the titles' names too) that the passage holds,
    turn-weighted alike. A document keeps its best score."""
    if not names:
        return {}
    stats = name_stats.get(cursor)
    limit = _distinctive_limit(stats, max_df)
    scores: dict[int, float] = {}
    title_terms = [t for t in names.terms if t in names.title_idf]
    titled: set[str] = set()  # the carried names that the searched titles hold
    if title_terms:
        cursor.execute(
            "SELECT c.document_id, tsvector_to_array(c.search_vector) "
            "FROM knowledge_chunk c WHERE c.kind = 'title' AND c.search_vector @@ %s::tsquery"
            + where
            + " LIMIT %s",
            [_tsquery_any(title_terms), *params, ENTITY_SCAN_LIMIT],
        )
        for doc_id, lexemes in cursor.fetchall():
            titled.update(lexeme for lexeme in lexemes if lexeme in names.title_idf)
            total = found = 0.0
            for lexeme in set(lexemes):
                df = stats.df.get(lexeme, 0)
                if 0 < df <= limit:
                    idf = math.log(1 + stats.total / df)
                    total += idf
                    found += idf * names.terms.get(lexeme, 0.0)
            if found > 0:
                scores[doc_id] = max(scores.get(doc_id, 0.0), found / total)
    # Passages count for the names no searched title holds. A word some title holds is a
    # topic of the knowledge base ("refund", "parking") or a name its titles already
    # carry; one no title holds is a name only the articles' text gives (every hotel's
    # article titled "Parking"), whichever titles hold it outside the search's filter.
    by_passage = [t for t in names.passage_idf if t not in titled]
    if not by_passage:
        return scores
    # The share of everything the conversation named (the titles' names too): a passage
    # holding one stray word of the context does not score as if it were the name.
    whole = sum(names.passage_idf[t] for t in by_passage)
    whole += sum(names.title_idf[t] for t in titled)
    held: dict[int, float] = {}  # chunk id -> weighted idf of the carried names it holds
    document_of: dict[int, int] = {}
    for lexeme in by_passage:
        rows = names.passages[lexeme]
        gain = names.passage_idf[lexeme] * names.terms[lexeme]
        for chunk_id, doc_id in rows:
            held[chunk_id] = held.get(chunk_id, 0.0) + gain
            document_of[chunk_id] = doc_id
    if where and held:  # the passages the search's source and tag filters allow
        cursor.execute(
            "SELECT c.id FROM knowledge_chunk c WHERE c.id = ANY(%s)" + where,  # noqa: S608
            [list(held), *params],
        )
        allowed = {int(row[0]) for row in cursor.fetchall()}
        held = {chunk_id: gain for chunk_id, gain in held.items() if chunk_id in allowed}
    for chunk_id, gain in held.items():
        doc_id = document_of[chunk_id]
        scores[doc_id] = max(scores.get(doc_id, 0.0), gain / whole)
    return scores


def _vector_scores_for_documents(
    cursor: Any, vector: np.ndarray, doc_ids: list[int]
) -> list[tuple[int, int, str, float]]:
    if not doc_ids:
        return []
    literal = "[" + ",".join(f"{x:.6f}" for x in vector.tolist()) + "]"
    cursor.execute(
        "SELECT c.id, c.document_id, c.kind, 1 - (c.embedding <=> %s::vector) "
        "FROM knowledge_chunk c WHERE c.embedding IS NOT NULL AND c.document_id = ANY(%s)",
        [literal, doc_ids],
    )
    return [(r[0], r[1], r[2], float(r[3])) for r in cursor.fetchall()]


def rank_documents(
    query: str | ConversationQuery,
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    query_vector: np.ndarray | None = None,
    candidates: int = CANDIDATES,
    text_weight: float | None = None,
    entity_weight: float | None = None,
    cursor: Any = None,
    redact_names: Sequence[str] = (),
) -> Ranking:
    """Rank documents (best chunk per document) by vectors, full text or both fused.

    ``query`` is a string (searched as it is) or a ``ConversationQuery`` (see the module
    docstring); ``search`` turns strings into one-turn conversations first.
    """
    if mode not in MODES:
        raise ValueError(f"mode: one of {MODES}")
    if text_weight is None:
        text_weight = float(getattr(settings, "KB_TEXT_WEIGHT", TEXT_WEIGHT))
    if entity_weight is None:
        entity_weight = float(getattr(settings, "KB_ENTITY_WEIGHT", ENTITY_WEIGHT))
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
                entity_weight=entity_weight,
                cursor=own,
                redact_names=redact_names,
            )
    conversation = query if isinstance(query, ConversationQuery) else None
    text_query = query.focus if isinstance(query, ConversationQuery) else query
    source_ids = _source_ids(cursor, sources)
    where, params = _filters(source_ids, tags)
    limit = max(candidates, k * 4)
    doc_vec: dict[int, float] = {}
    doc_text: dict[int, float] = {}
    doc_entity: dict[int, float] = {}
    best_body: dict[int, tuple[float, int]] = {}
    text_rows: list[tuple[int, int, str, float]] = []

    def take_vectors(rows: list[tuple[int, int, str, float]]) -> None:
        for chunk_id, doc_id, kind, sim in rows:
            doc_vec[doc_id] = max(doc_vec.get(doc_id, -1.0), sim)
            if kind == "body" and sim > best_body.get(doc_id, (-2.0, 0))[0]:
                best_body[doc_id] = (sim, chunk_id)

    if mode in ("hybrid", "vector"):
        if query_vector is None:
            query_vector = (
                conversation_vector(conversation, redact_names=redact_names)
                if conversation is not None
                else get_query_embedder().encode([text_query], redact_names=redact_names)[0]
            )
        exact = _few_rows(cursor, source_ids, tags)
        take_vectors(_vector_candidates(cursor, query_vector, limit, where, params, exact=exact))
    if mode == "hybrid":
        if conversation is not None and entity_weight > 0:
            names = entity_terms(cursor, conversation)
            doc_entity = _entity_matches(cursor, names, where, params)
        # The documents that best match the carried names join the candidates.
        named = sorted(doc_entity, key=lambda d: (-doc_entity[d], d))[:ENTITY_CANDIDATES]
        extra = [d for d in named if d not in doc_vec]
        if extra and query_vector is not None:
            take_vectors(_vector_scores_for_documents(cursor, query_vector, extra))
        # Full text re-scores the vector candidates' documents (plus the few chunks that
        # contain every query term) instead of ranking every any-term match: on 100k
        # chunks an any-term query matches tens of thousands of rows.
        strict = _strict_text_candidates(cursor, text_query, 20, where, params)
        pool = sorted(set(doc_vec) | {r[1] for r in strict})
        text_rows = _text_scores_for_documents(cursor, text_query, pool)
    elif mode == "text":
        text_query = query.text if isinstance(query, ConversationQuery) else query
        text_rows = _text_candidates(cursor, text_query, limit, where, params)
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
            scores[doc_id] = (
                base
                + text_weight * doc_text.get(doc_id, 0.0)
                + entity_weight * doc_entity.get(doc_id, 0.0)
            )
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    weight = entity_weight if mode == "hybrid" else 0.0
    return Ranking(ranked, best_body, doc_vec, doc_text, doc_entity, weight)


def conversation_query(query: str | Sequence[Turn] | ConversationQuery) -> ConversationQuery:
    """A string or a list of turns as a ``ConversationQuery``, with the live settings."""
    if isinstance(query, ConversationQuery):
        return query
    return build_query(
        query,
        context_weight=float(settings.KB_CONTEXT_WEIGHT),
        agent_weight=float(settings.KB_AGENT_WEIGHT),
        decay=float(settings.KB_CONTEXT_DECAY),
        max_turns=int(settings.KB_CONTEXT_TURNS),
    )


def search(
    query: str | Sequence[Turn] | ConversationQuery,
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    mode: str = "hybrid",
    query_vector: np.ndarray | None = None,
    candidates: int = CANDIDATES,
    text_weight: float | None = None,
    entity_weight: float | None = None,
    redact_names: Sequence[str] = (),
) -> list[SearchResult]:
    """The ``k`` best documents for ``query`` (a string or a conversation: a list of
    ``Turn``), each with its best passage and a snippet."""
    conversation = conversation_query(query.strip() if isinstance(query, str) else query)
    if not conversation or k <= 0:
        return []
    with connection.cursor() as cursor:
        ranking = rank_documents(
            conversation,
            k=k,
            sources=sources,
            tags=tags,
            mode=mode,
            query_vector=query_vector,
            candidates=candidates,
            text_weight=text_weight,
            entity_weight=entity_weight,
            cursor=cursor,
            redact_names=redact_names,
        )
        return _results(
            cursor,
            conversation.text,
            ranking.ranked,
            ranking.best_body,
            ranking.doc_vec,
            ranking.doc_text,
            {d: ranking.entity_weight * share for d, share in ranking.doc_entity.items()},
        )


def _results(
    cursor: Any,
    query: str,
    ranked: list[tuple[int, float]],
    best_body: dict[int, tuple[float, int]],
    doc_vec: dict[int, float],
    doc_text: dict[int, float],
    doc_named: dict[int, float] | None = None,
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
    shown = {c.pk: shown_text(c.text) for c in [*chunks.values(), *title_only.values()]}
    snippets = _snippets(cursor, query, shown)
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
                headline=framed(snippets.get(chunk.pk, shown[chunk.pk][:240]), shown[chunk.pk]),
                score=score,
                vector_score=doc_vec.get(doc_id),
                text_score=doc_text.get(doc_id),
                named_score=(doc_named or {}).get(doc_id, 0.0),
            )
        )
    return results
