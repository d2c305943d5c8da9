"""Reads of ``events_out``."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from events_out.models import OutgoingWebhook
from routing.customer_db import customer_vip_get
from tickets.models import Direction, Message, MessageKind, Ticket
from tickets.selectors import customer_submitted_id, ticket_submitted_id


def webhook_list_active() -> QuerySet[OutgoingWebhook]:
    return OutgoingWebhook.objects.filter(is_active=True).order_by("pk")


def _iso_utc(value: Any) -> str | None:
    """An aware ISO 8601 time as the event envelope writes its own (UTC, ``Z``)."""
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if moment is None or timezone.is_naive(moment):
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ticket_received_detail(*, event: dict[str, Any]) -> dict[str, Any]:
    """Seed 004's ``TicketReceived`` detail for a ``ticket.created`` envelope: the seed's
    fields (ids as strings, the subject, the description, i.e. the customer's first
    message, and the customer context), then the internal ticket id (``id``, a number),
    the event id, number, priority and source. ``ticket_id`` is the ticket's id as seed
    004's ``POST /tickets`` answered it (``tickets.selectors.ticket_submitted_id``): the
    caller's own ``ticket_id`` when it sent one, else the internal id as a string
    (``customer_id`` likewise: the customer's ``external_id`` when it has one);
    ``submitted_by`` names that caller (the API key's user; null without one): a caller's
    id is unique per caller only, so two callers' ``TKT-1001`` are told apart. Read
    when sent (a ticket erased since carries its erased text, and its internal id).

    ``timestamp`` is when the customer sent the first message when that is known (its
    ``sent_at``: seed 004's ``POST /tickets`` ``timestamp``, a channel's own time), else
    when the ticket was created. ``customer_context`` is what the VIP tool reads
    (``routing.customer_db.customer_vip_get``: the customer database when configured,
    else the customer row), so the event and the routing decision agree."""
    internal_id = int(event.get("ticket_id") or 0)
    ticket_id = str(event.get("ticket_id"))
    ticket = (
        Ticket.objects.select_related("customer", "origin_caller")
        .filter(pk=internal_id)
        .only(
            "pk",
            "subject",
            "correlation_id",
            "origin_platform_id",
            "origin_caller__username",
            "customer__vip_tier",
            "customer__account_type",
            "customer__external_id",
        )
        .first()
    )
    description = ""
    submitted_by = None
    customer_context: dict[str, Any] = {"is_vip": False, "account_type": ""}
    subject = str(event.get("subject") or "")
    customer_id = str(event.get("customer_id") or "")
    timestamp = event.get("timestamp")
    if ticket is not None:
        ticket_id = ticket_submitted_id(ticket)
        if ticket.customer is not None:  # the caller's own id when it gave one
            customer_id = customer_submitted_id(ticket.customer)
        if ticket.origin_caller is not None:  # whose own id ticket_id is
            submitted_by = ticket.origin_caller.get_username()
        subject = ticket.subject
        first = (
            Message.objects.filter(
                ticket_id=ticket.pk, direction=Direction.INBOUND, kind=MessageKind.PUBLIC
            )
            .order_by("created_at", "pk")
            .values_list("body_text", "metadata")
            .first()
        )
        if first is not None:
            description = first[0] or ""
            sent_at = first[1].get("sent_at") if isinstance(first[1], dict) else None
            timestamp = _iso_utc(sent_at) or timestamp
        if ticket.customer is not None:
            found = customer_vip_get(ticket.customer)
            customer_context = {"is_vip": found.is_vip, "account_type": found.account_type}
    return {
        "ticket_id": ticket_id,
        "customer_id": customer_id,
        "subject": subject,
        "description": description,
        "timestamp": timestamp,
        "correlation_id": str(event.get("correlation_id") or ""),
        "customer_context": customer_context,
        # a caller's ticket_id is unique per caller only: who sent it tells two apart
        "submitted_by": submitted_by,
        "id": internal_id,
        "event_id": event.get("id"),
        "number": event.get("number"),
        "priority": event.get("priority"),
        "source": event.get("source"),
    }
