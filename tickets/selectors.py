"""Reads of the core domain."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from support.errors import InvalidInput, NotFound
from tickets.models import Attachment, Message, Ticket

TICKET_FILTERS = ("status", "priority", "channel", "team", "assignee", "customer", "tag")


def parse_ticket_ref(ref: str | int) -> int:
    """Accept ``123`` or ``T-000123``."""
    text = str(ref).strip()
    if text.upper().startswith("T-"):
        text = text[2:]
    if not text.isdigit():
        raise NotFound(f"No ticket {ref!r}.")
    return int(text)


def ticket_get(ref: str | int, *, for_update: bool = False) -> Ticket:
    qs = Ticket.objects.select_related("customer", "team", "assignee", "merged_into")
    if for_update:
        qs = qs.select_for_update()
    try:
        return qs.get(pk=parse_ticket_ref(ref))
    except Ticket.DoesNotExist:
        raise NotFound(f"No ticket {ref!r}.") from None


def ticket_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Ticket]:
    """Tickets newest first, filtered by exact fields; unknown values raise InvalidInput."""
    filters = filters or {}
    qs = Ticket.objects.select_related("customer", "team", "assignee").prefetch_related("tags")
    for key in ("status", "priority", "channel"):
        value = filters.get(key)
        if value:
            values = [v for v in str(value).split(",") if v]
            qs = qs.filter(**{f"{key}__in": values})
    for key in ("team", "assignee", "customer"):
        value = filters.get(key)
        if value in (None, ""):
            continue
        if value == "none":
            qs = qs.filter(**{f"{key}__isnull": True})
            continue
        if not str(value).isdigit():
            raise InvalidInput(f"{key} must be an id or 'none'.", details={key: ["Not an id."]})
        qs = qs.filter(**{f"{key}_id": int(str(value))})
    if filters.get("tag"):
        qs = qs.filter(tags__name=str(filters["tag"]).lower())
    if filters.get("needs_review") in ("true", "1", True):
        qs = qs.filter(needs_review=True)
    return qs.order_by("-created_at", "-id")


def message_list(*, ticket: Ticket, include_internal: bool = True) -> QuerySet[Message]:
    qs = (
        Message.objects.filter(ticket=ticket)
        .select_related("author_user", "author_customer")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
    )
    if not include_internal:
        qs = qs.filter(kind="public")
    return qs.order_by("created_at", "id")
