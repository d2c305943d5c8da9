"""The core's domain events: payloads of ``ticket.*`` and ``message.*`` and their
recording in the outbox."""

from __future__ import annotations

from typing import Any

from support.events import NewEvent, events_record
from tickets.models import (
    Message,
    Ticket,
)

PREVIEW_CHARS = 140


# --- events ---------------------------------------------------------------


def ticket_event_payload(ticket: Ticket) -> dict[str, Any]:
    """Seed 001's ticket event fields."""
    return {
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "customer_id": ticket.customer_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "source": ticket.channel,
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
        "needs_review": ticket.needs_review,
        "is_bot_handoff": ticket.is_bot_handoff,
        "correlation_id": str(ticket.correlation_id),
    }


def ticket_new_event(event_type: str, ticket: Ticket, **extra: Any) -> NewEvent:
    return NewEvent(event_type, "ticket", ticket.pk, {**ticket_event_payload(ticket), **extra})


def message_ticket_fields(ticket: Ticket) -> dict[str, Any]:
    """Seed 001's event schema on a message event: the ticket's customer, status and
    priority as they are once the message is applied (an answer reopens a resolved one)."""
    return {"customer_id": ticket.customer_id, "status": ticket.status, "priority": ticket.priority}


def message_new_event(
    event_type: str, message: Message, *, ticket: Ticket | None = None, **extra: Any
) -> NewEvent:
    """``ticket``: the message's ticket as it is after the message (default: as loaded)."""
    return NewEvent(
        event_type,
        "message",
        message.pk,
        {
            "ticket_id": message.ticket_id,
            **message_ticket_fields(ticket or message.ticket),
            "source": message.channel,
            "message_id": message.pk,
            "direction": message.direction,
            "kind": message.kind,
            "channel": message.channel,
            "delivery_status": message.delivery_status,
            "preview": message.body_text[:PREVIEW_CHARS],
            **extra,
        },
    )


def _ticket_event(event_type: str, ticket: Ticket, **extra: Any) -> None:
    events_record([ticket_new_event(event_type, ticket, **extra)])


def _message_event(
    event_type: str, message: Message, *, ticket: Ticket | None = None, **extra: Any
) -> None:
    events_record([message_new_event(event_type, message, ticket=ticket, **extra)])
