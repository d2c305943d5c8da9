"""Knowledge-base reads: search through the configured backend, ticket suggestions, jobs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from redis.exceptions import RedisError

from knowledge import retrieval
from knowledge.backends import get_backend
from knowledge.conversation import AGENT, CUSTOMER, Turn, folded
from knowledge.metrics import kb_search_record
from knowledge.models import IngestionJob, KnowledgeSource, ObjectEvent, SuggestionFeedback
from knowledge.retrieval import SearchResult
from support.errors import NotFound
from support.redaction import truncate

# Queries and conversation turns are cut with ``support.redaction.truncate`` (at a word's
# end, never inside a personal detail): providers get them redacted, and a detail cut in
# two would no longer be recognised.
MAX_QUERY_CHARS = 1000
MAX_TURN_CHARS = 1000
SUGGESTIONS_CACHE_SECONDS = 300


def _redaction_names(backend: Any, customer_id: int | None) -> tuple[str, ...]:
    """The customer's names when the backend sends the query off-machine."""
    if customer_id is None or not backend.sends_text:
        return ()
    from tickets.context.privacy import customer_redaction_names

    return tuple(customer_redaction_names(customer_id))


def kb_search(
    query: str,
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    customer_id: int | None = None,
) -> list[SearchResult]:
    """``customer_id``: the customer whose ticket the query comes from; a backend that
    sends the query off-machine gets their names to redact."""
    started = time.perf_counter()
    backend = get_backend()
    names = _redaction_names(backend, customer_id)
    results = backend.search(
        truncate(query, MAX_QUERY_CHARS), k=k, sources=sources, tags=tags, redact_names=names
    )
    kb_search_record(seconds=time.perf_counter() - started, results=len(results))
    return results


def kb_search_conversation(
    turns: Sequence[Turn],
    *,
    k: int = 5,
    sources: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    customer_id: int | None = None,
    record: bool = True,
) -> list[SearchResult]:
    """Search with a conversation (see ``knowledge.conversation``). The local backend
    builds the query from the turns; other backends get its one-string form. Names of
    ``customer_id`` are redacted from whatever leaves the machine, as in ``kb_search``.
    ``record=False``: not counted in the search metrics (offline evaluations)."""
    started = time.perf_counter()
    backend = get_backend()
    names = _redaction_names(backend, customer_id)
    if backend.name == "local":
        results = retrieval.search(list(turns), k=k, sources=sources, tags=tags, redact_names=names)
    else:
        text = retrieval.conversation_query(list(turns)).text
        results = backend.search(
            truncate(text, MAX_QUERY_CHARS), k=k, sources=sources, tags=tags, redact_names=names
        )
    if record:
        kb_search_record(seconds=time.perf_counter() - started, results=len(results))
    return results


def ticket_conversation(ticket: Any) -> list[Turn]:
    """The ticket as conversation turns: its subject (as the customer's first words) and
    its latest public messages, customer's inbound and agents' outbound, oldest first
    (``KB_CONTEXT_TURNS`` of them; internal notes and system messages left out). The
    subject of a ticket the system opened (``ticket_opened_by_system``: an IVR failure's
    "IVR failure: max retries (…)") is the system's words, not the customer's: left out,
    so until the customer writes there is no question to suggest articles for."""
    from tickets.selectors import message_list, message_opened_ticket

    # Public entries and system ones in one read: the system entry a ticket was opened
    # with says whether its subject is the system's (no query of its own: the ticket page
    # reads this for its suggestions).
    listed = [m for m in message_list(ticket=ticket) if m.kind in ("public", "system")]
    opened_by_system = any(message_opened_ticket(message=m, ticket=ticket) for m in listed)
    messages = [
        m
        for m in listed
        if m.kind == "public" and m.body_text.strip() and m.direction in ("inbound", "outbound")
    ]
    recent = messages[-int(settings.KB_CONTEXT_TURNS) :] if messages else []
    turns = [
        Turn(
            CUSTOMER if m.direction == "inbound" else AGENT,
            truncate(m.body_text.strip(), MAX_TURN_CHARS),
        )
        for m in recent
    ]
    subject = "" if opened_by_system else (ticket.subject or "").strip()
    if subject and folded(subject) not in folded(turns[0].text if turns else ""):
        turns.insert(0, Turn(CUSTOMER, truncate(subject, MAX_TURN_CHARS)))
    return turns


def ticket_suggestions(ticket: Any, *, k: int = 3) -> list[SearchResult]:
    """Passages above ``KB_SUGGESTION_MIN_SCORE`` for the ticket's conversation, best
    first: the query is built from the subject and the recent messages (the customer's
    last question weighted most, names from earlier turns carried, small talk dropped)."""
    turns = ticket_conversation(ticket)
    if not any(t.speaker == CUSTOMER and t.text for t in turns):
        return []
    # Cached per ticket state and knowledge-base state: the ticket page must not embed and
    # search on every view, and an article ingestion or deletion removed must not be shown
    # from the cache (the version every ingestion and deletion signals).
    stamp = ticket.last_message_at.timestamp() if ticket.last_message_at else 0
    try:
        kb_version = retrieval.versions.get(retrieval.NAME_STATS_VERSION_KEY)
    except RedisError:  # the cache is down: nothing is cached anyway
        kb_version = None
    # v3: headlines leave the articles' example phrasings out (v2: plain-text headlines).
    key = f"kb-suggestions:v3:{ticket.pk}:{stamp}:{k}:{kb_version}"
    results = cache.get(key)
    if results is None:
        results = kb_search_conversation(turns, k=k, customer_id=ticket.customer_id)
        cache.set(key, results, timeout=SUGGESTIONS_CACHE_SECONDS)
    threshold = float(settings.KB_SUGGESTION_MIN_SCORE)
    return [r for r in results if r.fit >= threshold]  # a name alone is no answer


def object_events_failed_count() -> int:
    """S3 object events the sweep gave up on (attempts spent), now: dead letters waiting
    for a supervisor's re-drive (admin: Object events, state "Failed"). One count over the
    partial index of unprocessed events (``kb_objectevent_pending``)."""
    return ObjectEvent.objects.filter(processed_at__isnull=True, failed_at__isnull=False).count()


def knowledge_sources_failing() -> dict[str, int]:
    """How many sources of each kind (every kind, 0 when none) whose last finished run (a
    sync or a ``kb_ingest``) failed, now: a level that stays until a later run of the
    source succeeds (a run queued or running meanwhile does not clear it). A sync of all
    sources (no source on the job) is a run of every folder and S3 source that existed
    when it finished; uploads and S3 events are not runs of the source (an upload has its
    own re-run, an event its own dead letter). One statement: per source, two top-1
    lookups on the partial index ``kb_job_last_run`` (finished syncs and ingests only,
    not the one job per S3 event), and the last sync of all sources once."""
    runs = IngestionJob.objects.filter(
        kind__in=[IngestionJob.Kind.SYNC, IngestionJob.Kind.INGEST],
        status__in=[IngestionJob.Status.SUCCEEDED, IngestionJob.Status.FAILED],
    ).order_by("-finished_at", "-pk")
    own = runs.filter(source=OuterRef("pk"))
    every = runs.filter(source__isnull=True)
    rows = KnowledgeSource.objects.annotate(
        own_status=Subquery(own.values("status")[:1]),
        own_at=Subquery(own.values("finished_at")[:1]),
        all_status=Subquery(every.values("status")[:1]),
        all_at=Subquery(every.values("finished_at")[:1]),
    ).values_list("kind", "created_at", "own_status", "own_at", "all_status", "all_at")
    failing = dict.fromkeys(KnowledgeSource.Kind.values, 0)
    for kind, created_at, status, at, all_status, all_at in rows:
        if (
            kind != KnowledgeSource.Kind.UPLOAD  # a sync of all sources skips uploads
            and all_at is not None
            and all_at > created_at
            and (at is None or all_at > at)
        ):
            status = all_status
        if status == IngestionJob.Status.FAILED:
            failing[kind] = failing.get(kind, 0) + 1
    return failing


def job_get(job_id: int | str) -> IngestionJob:
    try:
        return IngestionJob.objects.select_related("source").get(pk=int(job_id))
    except (IngestionJob.DoesNotExist, ValueError):
        raise NotFound(f"job_id: no job {job_id!r}") from None


def feedback_list(*, ticket: Any = None) -> QuerySet[SuggestionFeedback]:
    qs = SuggestionFeedback.objects.select_related("user", "document", "chunk")
    if ticket is not None:
        qs = qs.filter(ticket=ticket)
    return qs


def feedback_summary() -> QuerySet[Any]:
    """Per document: helpful / not helpful counts (for supervisors)."""
    return (
        SuggestionFeedback.objects.filter(document__isnull=False)
        .values("document_id", "document__title")
        .annotate(
            helpful_count=Count("id", filter=Q(helpful=True)),
            not_helpful_count=Count("id", filter=Q(helpful=False)),
        )
        .order_by("-not_helpful_count", "-helpful_count")
    )


def reply_draft_list(*, ticket: Any = None) -> QuerySet[Any]:
    from knowledge.models import ReplyDraft

    qs = ReplyDraft.objects.select_related("user")
    return qs.filter(ticket=ticket) if ticket is not None else qs


def reply_draft_summary(drafts: QuerySet[Any] | None = None) -> dict[str, Any]:
    """Drafts offered and what became of them, with shares of the settled ones (sent as
    drafted, sent after editing, discarded), overall and per provider; of ``drafts`` when
    given (the rows a viewer may see: the admin's list), else of every draft."""
    from knowledge.models import ReplyDraft

    if drafts is None:
        drafts = ReplyDraft.objects.all()

    outcomes = [o.value for o in ReplyDraft.Outcome]

    def shape(counts: dict[str, int]) -> dict[str, Any]:
        settled = sum(counts.get(o, 0) for o in outcomes if o != ReplyDraft.Outcome.PENDING)
        return {
            "offered": sum(counts.values()),
            **{o: counts.get(o, 0) for o in outcomes},
            "settled": settled,
            "accepted_rate": round(counts.get("accepted", 0) / settled, 4) if settled else None,
            "edited_rate": round(counts.get("edited", 0) / settled, 4) if settled else None,
            "discarded_rate": round(counts.get("discarded", 0) / settled, 4) if settled else None,
            "used_rate": (
                round((counts.get("accepted", 0) + counts.get("edited", 0)) / settled, 4)
                if settled
                else None
            ),
        }

    total: dict[str, int] = {}
    by_provider: dict[str, dict[str, int]] = {}
    for row in drafts.order_by().values("provider", "outcome").annotate(n=Count("id")):
        total[row["outcome"]] = total.get(row["outcome"], 0) + row["n"]
        by_provider.setdefault(row["provider"], {})[row["outcome"]] = row["n"]
    return {
        **shape(total),
        "by_provider": {name: shape(counts) for name, counts in sorted(by_provider.items())},
    }


def document_passages(document_ids: Sequence[int], *, limit: int = 4) -> dict[int, list[str]]:
    """The first ``limit`` body passages of each document, in reading order (one query)."""
    from knowledge.models import Chunk

    out: dict[int, list[str]] = {}
    rows = (
        Chunk.objects.filter(document_id__in=list(document_ids), kind=Chunk.Kind.BODY)
        .order_by("document_id", "position")
        .values_list("document_id", "text")
    )
    for document_id, text in rows:
        passages = out.setdefault(document_id, [])
        if len(passages) < limit:
            passages.append(text)
    return out
