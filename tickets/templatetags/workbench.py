"""Small presentation helpers for the workbench templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from support.text import readable_time, words
from tickets.models import Channel
from tickets.system_text import system_text_for_people

register = template.Library()

CHANNEL_ICONS = {
    "whatsapp": "WA",
    "messenger": "FB",
    "instagram": "IG",
    "twitter": "X",
    "email": "@",
    "webchat": "WC",
    "chatbot": "AI",
    "phone": "☎",
    "api": "API",
}


@register.filter
def channel_icon(channel: str) -> str:
    return CHANNEL_ICONS.get(channel, "?")


_CHANNEL_LABELS = dict(Channel.choices)


@register.filter
def channel_label(channel: str) -> str:
    """A channel as the inbox names it ("Web chat"), for data that carries the value
    ("webchat": the customer-context panel's interactions)."""
    return str(_CHANNEL_LABELS.get(channel) or words(channel))


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """``mapping[key]`` in a template, None when absent (a form's value or error by a
    field name held in a variable: tickets/_new_field.html)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def system_text(text: str) -> str:
    """A system entry's text as people read it (:mod:`tickets.system_text`: e.g. the
    routing's review reasons with the data set's labels in words)."""
    return system_text_for_people(str(text or ""))


@register.filter
def interaction_kind(kind: str) -> str:
    """An interaction's kind by its label ("Customer message", not "message")."""
    from tickets.context.models import InteractionKind

    return str(dict(InteractionKind.choices).get(kind) or words(kind))


#: A customer's message received within this of when it says it was sent shows one time.
SENT_AT_SHOWN_FROM_SECONDS = 60


@register.filter
def customer_sent_at(message: Any) -> datetime | None:
    """When the customer sent an inbound message (``metadata["sent_at"]``: the channel's
    timestamp, or seed 004's ``timestamp`` given to ``POST /tickets``), when that is a
    minute or more away from when it was received (``created_at``); else None."""
    metadata = getattr(message, "metadata", None)
    raw = metadata.get("sent_at") if isinstance(metadata, dict) else None
    if not isinstance(raw, str) or getattr(message, "created_at", None) is None:
        return None
    try:
        sent = parse_datetime(raw)
    except ValueError:
        return None
    if sent is None or timezone.is_naive(sent):
        return None
    apart = abs((message.created_at - sent).total_seconds())
    return sent if apart >= SENT_AT_SHOWN_FROM_SECONDS else None


@register.filter
def waited(since: datetime | None) -> str:
    """Compact time waiting: 45s, 12m, 3h, 2d."""
    if since is None:
        return ""
    seconds = max(0, int((timezone.now() - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _span(seconds: int) -> str:
    """Compact duration: 45s, 12m, 3h 05m, 2d 4h."""
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _ticket_sla_due(ticket: Any) -> datetime | None:
    """The next running due time: the inbox annotates it (``sla_due``); elsewhere it is
    computed from the row, by the same rule (``tickets.selectors.sla_due_expression``)."""
    if hasattr(ticket, "sla_due"):
        return ticket.sla_due  # type: ignore[no-any-return]
    from tickets.selectors import SLA_FIRST_RESPONSE_STATUSES, SLA_RESOLUTION_STATUSES

    candidates = []
    if ticket.first_response_at is None and ticket.status in SLA_FIRST_RESPONSE_STATUSES:
        candidates.append(ticket.first_response_due_at)
    if ticket.status in SLA_RESOLUTION_STATUSES and ticket.sla_paused_at is None:
        candidates.append(ticket.resolution_due_at)
    return min((c for c in candidates if c is not None), default=None)


@register.simple_tag
def sla_badge(ticket: Any) -> str:
    """Time left to the ticket's next SLA due time, or how long it is overdue."""
    from tickets.selectors import sla_warning_window

    due = _ticket_sla_due(ticket)
    if due is None:
        if ticket.sla_paused_at is not None and ticket.status == "pending":
            return format_html(
                '<span class="badge sla sla-paused" title="Waiting on the customer: '
                'the resolution clock is stopped">SLA paused</span>'
            )
        return "—"
    now = timezone.now()
    left = int((due - now).total_seconds())
    when = readable_time(due)
    if left <= 0:
        return format_html(
            '<span class="badge sla sla-breached" title="Was due {}">Overdue {}</span>',
            when,
            _span(-left),
        )
    kind = "sla-risk" if due <= now + sla_warning_window() else "sla-ok"
    return format_html(
        '<span class="badge sla {}" title="Due {}">{} left</span>', kind, when, _span(left)
    )
