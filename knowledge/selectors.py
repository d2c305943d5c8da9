"""Knowledge-base reads: search through the configured backend, ticket suggestions, jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet

from knowledge.backends import get_backend
from knowledge.models import IngestionJob, SuggestionFeedback
from knowledge.retrieval import SearchResult
from support.errors import NotFound

MAX_QUERY_CHARS = 1000
SUGGESTIONS_CACHE_SECONDS = 300


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
    backend = get_backend()
    names: tuple[str, ...] = ()
    if customer_id is not None and backend.sends_text:
        from tickets.context.privacy import customer_redaction_names

        names = customer_redaction_names(customer_id)
    return backend.search(
        query[:MAX_QUERY_CHARS], k=k, sources=sources, tags=tags, redact_names=names
    )


def ticket_query_text(ticket: Any) -> str:
    """What a ticket asks: its subject and the customer's latest inbound messages."""
    from tickets.selectors import message_list

    inbound = [
        m.body_text
        for m in message_list(ticket=ticket, include_internal=False)
        if m.direction == "inbound" and m.body_text.strip()
    ]
    parts = [ticket.subject, *inbound[-2:]]
    return "\n".join(p.strip() for p in parts if p and p.strip())[:MAX_QUERY_CHARS]


def ticket_suggestions(ticket: Any, *, k: int = 3) -> list[SearchResult]:
    """Passages above ``KB_SUGGESTION_MIN_SCORE`` for the ticket, best first."""
    query = ticket_query_text(ticket)
    if not query:
        return []
    # Cached per ticket state: the ticket page must not embed and search on every view.
    stamp = ticket.last_message_at.timestamp() if ticket.last_message_at else 0
    # v2: SearchResult carries a plain-text headline (results cached before it have none).
    key = f"kb-suggestions:v2:{ticket.pk}:{stamp}:{k}"
    results = cache.get(key)
    if results is None:
        results = kb_search(query, k=k, customer_id=ticket.customer_id)
        cache.set(key, results, timeout=SUGGESTIONS_CACHE_SECONDS)
    threshold = float(settings.KB_SUGGESTION_MIN_SCORE)
    return [r for r in results if r.score >= threshold]


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
