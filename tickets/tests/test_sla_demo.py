"""A demo load creates SLA policies and a ticket whose breach the checker records."""

from __future__ import annotations

import pytest

from support.models import OutboxEvent
from tickets import demo
from tickets.models import SlaEvent, SlaPolicy, Ticket
from tickets.services.sla import sla_check

pytestmark = pytest.mark.django_db


def test_demo_load_gives_policies_and_a_breach_on_a_demo_ticket(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_TICKETS", 12)
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    assert sorted(SlaPolicy.objects.values_list("priority", flat=True)) == [
        "high",
        "low",
        "normal",
        "urgent",
    ]
    assert Ticket.objects.filter(tags__name="demo").exclude(first_response_due_at=None).exists()
    late = Ticket.objects.get(tags__name=demo.SLA_DEMO_TAG)
    for ticket in Ticket.objects.filter(tags__name="demo"):
        # replies and resolutions happened after the (back-dated) opening
        if ticket.first_response_at is not None:
            assert ticket.created_at < ticket.first_response_at
        if ticket.resolved_at is not None:
            assert ticket.first_response_at is not None
            assert ticket.first_response_at <= ticket.resolved_at

    history = SlaEvent.objects.count()
    assert history > 0  # the back-dated backlog has overdue tickets
    assert not OutboxEvent.objects.filter(event_type__startswith="sla.").exists()

    result = sla_check()

    # the back-dated backlog's breaches are history: only the fresh one is new
    assert result.recorded == [(late.pk, "first_response", "breached")]
    event = OutboxEvent.objects.get(event_type="sla.breached", aggregate_id=str(late.pk))
    assert event.payload["ticket_ref"] == late.number
    assert event.payload["policy"] == "Urgent (24/7)"
    # loading again changes nothing
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    assert Ticket.objects.filter(tags__name=demo.SLA_DEMO_TAG).count() == 1
    assert SlaPolicy.objects.count() == 4
    assert SlaEvent.objects.count() == history + 1
