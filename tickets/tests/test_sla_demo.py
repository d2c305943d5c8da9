"""A demo load creates SLA policies and a ticket whose breach the checker records."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from support.models import OutboxEvent
from tickets import demo
from tickets.models import Direction, MessageKind, SlaEvent, SlaPolicy, Ticket
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
        # the ticket page's "Customer since" is not after the customer's first ticket
        assert ticket.customer.created_at <= ticket.created_at

    history = SlaEvent.objects.count()
    assert history > 0  # the back-dated backlog has overdue tickets
    assert not OutboxEvent.objects.filter(event_type__startswith="sla.").exists()

    result = sla_check()

    # the back-dated backlog's breaches are history: only the fresh one is new
    assert result.recorded == [(late.pk, "first_response", "breached")]
    event = OutboxEvent.objects.get(event_type="sla.breached", aggregate_id=str(late.pk))
    assert event.payload["ticket_ref"] == late.number
    assert event.payload["policy"] == "Urgent (24/7)"
    # loading again changes nothing, but gives an installation loaded before the demo had
    # an `admin` login (its `supervisor` was the superuser) that login
    users = get_user_model().objects
    assert users.get(username="admin").is_superuser
    assert not users.get(username="supervisor").is_superuser
    users.filter(username="admin").delete()
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    assert Ticket.objects.filter(tags__name=demo.SLA_DEMO_TAG).count() == 1
    assert SlaPolicy.objects.count() == 4
    assert SlaEvent.objects.count() == history + 1
    assert users.get(username="admin").check_password("demo-pass-for-tests")


def test_demo_conversations_follow_their_back_dated_tickets(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_TICKETS", 40)
    before = timezone.now()
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    after = timezone.now()
    checked = {"replied": 0, "resolved": 0, "answered back": 0}
    for ticket in Ticket.objects.filter(tags__name__in=["demo", demo.SLA_DEMO_TAG]).distinct():
        messages = list(ticket.messages.order_by("pk"))
        times = [m.created_at for m in messages]
        assert times == sorted(times), ticket.number
        assert times[0] == ticket.created_at < before, ticket.number
        assert times[-1] <= after
        replies = [
            m
            for m in messages
            if m.kind == MessageKind.PUBLIC and m.direction == Direction.OUTBOUND
        ]
        if replies:
            checked["replied"] += 1
            assert replies[0].created_at == ticket.first_response_at, ticket.number
            assert replies[0].delivered_at in (None, replies[0].created_at)
        if ticket.resolved_at is not None:
            checked["resolved"] += 1
            resolution = [
                m
                for m in messages
                if (m.metadata.get("changes") or {}).get("status", [None, None])[1] == "resolved"
            ]
            assert resolution[-1].created_at == ticket.resolved_at, ticket.number
        conversation = [m for m in messages if m.kind != MessageKind.SYSTEM]
        assert ticket.last_message_at == conversation[-1].created_at, ticket.number
        if ticket.waiting_since is not None:
            later = [m for m in conversation if m.created_at >= ticket.waiting_since]
            assert later, ticket.number
            assert all(m.direction == Direction.INBOUND for m in later), ticket.number
            if len(conversation) > 1:
                checked["answered back"] += 1
    assert min(checked.values()) > 0, checked
