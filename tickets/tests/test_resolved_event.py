"""``ticket.resolved``: recorded with ``ticket.updated`` when a ticket becomes resolved (and
only then), through the outbox like every ticket event."""

from __future__ import annotations

import pytest

from support.models import OutboxEvent
from tickets import services
from tickets.models import TicketStatus


@pytest.mark.django_db
def test_resolving_a_ticket_records_ticket_resolved(customer):
    ticket = services.ticket_create(customer=customer, subject="s", body="b")
    services.ticket_update(ticket=ticket, status=TicketStatus.OPEN)
    services.ticket_update(ticket=ticket, status=TicketStatus.RESOLVED)
    services.ticket_update(ticket=ticket, status=TicketStatus.OPEN)  # reopened: no event

    types = list(OutboxEvent.objects.order_by("pk").values_list("event_type", flat=True))
    assert types == [
        "ticket.created",
        "message.created",
        "ticket.updated",
        "ticket.updated",
        "ticket.resolved",
        "ticket.updated",
    ]
    resolved = OutboxEvent.objects.get(event_type="ticket.resolved")
    ticket.refresh_from_db()
    assert resolved.aggregate_id == str(ticket.pk)
    assert resolved.payload["ticket_id"] == ticket.pk
    assert resolved.payload["status"] == "resolved"
    assert resolved.payload["resolved_at"].endswith("Z")
