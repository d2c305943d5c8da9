"""SLA attainment judges a ticket closed without being resolved (review B1): an agent may
close a new, open or pending ticket straight away (only ``closed_at`` is set), and before,
such a ticket dropped out of the attainment: closing an overdue ticket made its breach
disappear. The resolution clock ends at ``COALESCE(resolved_at, closed_at)``; a closed
ticket never answered is a breached first response when its reply was due before its
clock stopped."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tickets import selectors, services
from tickets.models import BusinessCalendar, SlaPolicy, Ticket

pytestmark = pytest.mark.django_db

NONE = {"met": 0, "breached": 0, "attainment": None}


@pytest.fixture(autouse=True)
def policy() -> SlaPolicy:
    """High: first response within 60 minutes, resolution within 240, around the clock."""
    calendar = BusinessCalendar.objects.create(name="24/7", timezone="UTC", is_24_7=True)
    return SlaPolicy.objects.create(
        name="High",
        priority="high",
        calendar=calendar,
        first_response_minutes=60,
        resolution_minutes=240,
    )


def _ticket(customer, minutes_ago: int = 0) -> Ticket:
    """A high-priority ticket opened ``minutes_ago`` (its due times moved back with it)."""
    ticket = services.ticket_create(customer=customer, subject="Help", body="hi", priority="high")
    delta = timedelta(minutes=minutes_ago)
    assert ticket.first_response_due_at is not None
    assert ticket.resolution_due_at is not None
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=ticket.created_at - delta,
        first_response_due_at=ticket.first_response_due_at - delta,
        resolution_due_at=ticket.resolution_due_at - delta,
    )
    return Ticket.objects.get(pk=ticket.pk)


def _status(ticket: Ticket, status: str, actor=None) -> Ticket:
    return services.ticket_update(
        ticket=Ticket.objects.get(pk=ticket.pk), actor=actor, status=status
    )


def _attainment(start: datetime | None = None, end: datetime | None = None) -> dict:
    now = timezone.now()
    return selectors.sla_attainment(
        start=start or now - timedelta(hours=1), end=end or now + timedelta(seconds=1)
    )


def test_closing_an_overdue_unanswered_ticket_breaches_both_targets(customer, agent):
    """The reviewer's case: a ticket past both due times, closed from open by an agent,
    was in "Breached now" before the close and nowhere after it."""
    ticket = _status(_ticket(customer, minutes_ago=300), "open", agent)
    assert _attainment()["open_breached"] == 1
    closed = _status(ticket, "closed", agent)
    assert (closed.resolved_at, closed.closed_at is not None) == (None, True)
    figures = _attainment()
    assert figures["open_breached"] == 0
    assert figures["resolution"] == {"met": 0, "breached": 1, "attainment": 0.0}
    assert figures["first_response"] == {"met": 0, "breached": 1, "attainment": 0.0}


def test_a_ticket_closed_in_time_meets_its_resolution_and_judges_its_reply(customer, agent):
    answered = _ticket(customer, minutes_ago=30)
    services.message_add(ticket=answered, body="On it", author_user=agent)  # in time
    _status(answered, "pending", agent)
    _status(answered, "closed", agent)  # from pending, within its resolution target
    unanswered = _ticket(customer, minutes_ago=10)
    _status(unanswered, "closed", agent)  # straight from new, before its reply was due
    figures = _attainment()
    assert figures["resolution"] == {"met": 2, "breached": 0, "attainment": 1.0}
    # the closed ticket no reply was due for yet is not judged on its first response
    assert figures["first_response"] == {"met": 1, "breached": 0, "attainment": 1.0}


def test_resolved_then_closed_counts_once_at_its_resolution(customer, agent):
    late = _ticket(customer, minutes_ago=300)
    _status(late, "resolved", agent)  # 300 min > 240: late, and never answered
    figures = _attainment()
    assert figures["resolution"] == {"met": 0, "breached": 1, "attainment": 0.0}
    # resolved but not answered: not judged yet (it may be reopened and answered)
    assert figures["first_response"] == NONE
    _status(late, "closed", agent)
    figures = _attainment()
    assert figures["resolution"] == {"met": 0, "breached": 1, "attainment": 0.0}
    # closed now: nobody can answer it any more, and its reply was due before it stopped
    assert figures["first_response"] == {"met": 0, "breached": 1, "attainment": 0.0}


def test_a_reply_due_only_after_the_resolution_is_not_a_breach_at_the_close(customer, agent):
    """The first-response clock stands still while the ticket is resolved: a ticket
    solved (by phone, say) before its reply was due and closed after that time did not
    miss its reply."""
    ticket = _status(_ticket(customer, minutes_ago=50), "resolved", agent)
    now = timezone.now()
    # resolved 20 minutes ago; the reply was due 10 minutes ago, while it stood resolved
    Ticket.objects.filter(pk=ticket.pk).update(
        resolved_at=now - timedelta(minutes=20),
        first_response_due_at=now - timedelta(minutes=10),
    )
    _status(ticket, "closed", agent)
    figures = _attainment()
    assert figures["first_response"] == NONE
    assert figures["resolution"] == {"met": 1, "breached": 0, "attainment": 1.0}


def test_a_close_is_counted_in_the_window_it_happened(customer, agent):
    ticket = _status(_ticket(customer, minutes_ago=300), "closed", agent)
    closed_at = Ticket.objects.get(pk=ticket.pk).closed_at
    assert closed_at is not None
    before = _attainment(start=closed_at - timedelta(days=1), end=closed_at)
    assert (before["first_response"], before["resolution"]) == (NONE, NONE)
    after = _attainment(start=closed_at, end=closed_at + timedelta(seconds=1))
    assert after["first_response"]["breached"] == after["resolution"]["breached"] == 1


def test_closing_an_overdue_ticket_records_its_breaches_once(customer, agent):
    """The SLA checker looks at running clocks once a minute: a ticket closed past its due
    times before a run saw it left no breach event (no note, no ``sla.breached`` for the
    alerts' history and integrations), though the attainment counts it. The close records
    them as a late resolution does, once per target."""
    from tickets.models import Message
    from tickets.services.sla import sla_check
    from tickets.sla_models import SlaEvent, SlaEventKind

    ticket = _status(_ticket(customer, minutes_ago=300), "open", agent)
    _status(ticket, "closed", agent)
    breaches = SlaEvent.objects.filter(ticket=ticket, kind=SlaEventKind.BREACHED)
    assert sorted(breaches.values_list("target", flat=True)) == [
        "first_response",
        "resolution",
    ]
    notes = Message.objects.filter(ticket=ticket, body_text__startswith="SLA ").values_list(
        "body_text", flat=True
    )
    assert len(notes) == 2
    assert all(", closed " in note for note in notes), list(notes)
    sla_check()  # the checker, after the close, adds nothing
    assert breaches.count() == 2


def test_closing_a_ticket_within_its_targets_records_no_breach(customer, agent):
    from tickets.sla_models import SlaEvent

    _status(_ticket(customer, minutes_ago=10), "closed", agent)
    assert not SlaEvent.objects.exists()
