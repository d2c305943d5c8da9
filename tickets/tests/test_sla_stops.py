"""The stopped SLA clocks (docs/sla.md, "The clocks"): each stop is recorded and measured
in the calendar of the policy that applies when due times are computed, whatever policy
(or none) the ticket had while it was stopped; the first-response clock stands still
while the ticket is resolved or closed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from tickets import selectors, services
from tickets.models import (
    BusinessCalendar,
    BusinessHours,
    Direction,
    SlaEvent,
    SlaPolicy,
    Ticket,
)
from tickets.selectors import sla_due_q
from tickets.services import sla as sla_services
from tickets.sla import sla_policies_forget
from tickets.templatetags.workbench import _ticket_sla_due

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")  # UTC in December
FRI_14 = datetime(2026, 12, 4, 14, 0, tzinfo=LONDON)
MON_09 = datetime(2026, 12, 7, 9, 0, tzinfo=LONDON)


@contextmanager
def at(when: datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=when.astimezone(UTC)):
        yield


@pytest.fixture(autouse=True)
def _fresh_policies() -> Iterator[None]:
    sla_policies_forget()
    yield
    sla_policies_forget()


@pytest.fixture
def office() -> BusinessCalendar:
    cal = BusinessCalendar.objects.create(name="Office", timezone="Europe/London")
    for day in range(5):
        BusinessHours.objects.create(
            calendar=cal, weekday=day, opens_at=time(9), closes_at=time(18)
        )
    return cal


@pytest.fixture
def always() -> BusinessCalendar:
    return BusinessCalendar.objects.create(name="24/7", timezone="UTC", is_24_7=True)


def _policy(calendar, name, priority, fr, res, **extra) -> SlaPolicy:
    return SlaPolicy.objects.create(
        name=name,
        priority=priority,
        calendar=calendar,
        first_response_minutes=fr,
        resolution_minutes=res,
        **extra,
    )


def _ticket(customer, when: datetime, priority: str) -> Ticket:
    with at(when):
        return services.ticket_create(customer=customer, subject="x", body="y", priority=priority)


def _pending_over_the_weekend(customer, agent, priority: str) -> Ticket:
    """Opened Friday 14:00, answered and pending at 14:10, the customer writes back on
    Monday 09:00."""
    ticket = _ticket(customer, FRI_14, priority)
    with at(FRI_14 + timedelta(minutes=10)):
        services.message_add(ticket=ticket, body="Which order?", author_user=agent)
        services.ticket_update(ticket=ticket, status="pending")
    with at(MON_09):
        services.message_add(
            ticket=ticket, body="#123", direction=Direction.INBOUND, author_customer=customer
        )
    ticket.refresh_from_db()
    return ticket


def test_a_weekend_stop_under_office_hours_counts_in_full_under_a_24_7_policy(
    customer, agent, office, always
):
    """Office-hours High ticket pending Friday 14:10 to Monday 09:00 (no business time),
    raised to Urgent (24/7, 4 h) at 09:05: its resolution is due 4 h of its open time
    after creation, i.e. Friday 14:00 + 4 h + the 66 h 50 min it was stopped. Before, the
    office-hours number (0) was reused: due Friday 18:00, three days in the past."""
    _policy(office, "High", "high", 60, 480)
    _policy(always, "Urgent", "urgent", 30, 240)
    ticket = _pending_over_the_weekend(customer, agent, "high")
    assert ticket.status == "open"
    # of the stop, only Friday 14:10-18:00 is office time: 3 h 50 min
    assert ticket.sla_paused_seconds == 230 * 60
    assert ticket.resolution_due_at == datetime(2026, 12, 7, 16, 50, tzinfo=LONDON)
    with at(MON_09 + timedelta(minutes=5)):
        services.ticket_update(ticket=ticket, priority="urgent", reason="supervisor")
    ticket.refresh_from_db()
    stopped = MON_09 - (FRI_14 + timedelta(minutes=10))
    assert ticket.resolution_due_at == FRI_14 + timedelta(hours=4) + stopped
    assert ticket.sla_paused_seconds == stopped.total_seconds()
    # and the checker has nothing to record: 16 minutes of the 4 hours were used
    result = sla_services.sla_check(now=MON_09 + timedelta(minutes=6))
    assert result.recorded == []
    assert not SlaEvent.objects.filter(ticket=ticket).exists()


def test_a_stop_under_a_24_7_policy_counts_as_business_time_under_office_hours(
    customer, agent, office, always
):
    """The other way: Urgent (24/7) Friday 16:00, pending 16:30 to Monday 09:00, filed
    as Normal (office, 18 h): only Friday 16:30-18:00 of the stop is office time, so the
    resolution is due 19.5 office hours after Friday 16:00: Tuesday 17:30 (before, the
    24/7 stop of 64.5 hours was added as office time: a week later)."""
    _policy(always, "Urgent", "urgent", 30, 240)
    _policy(office, "Normal", "normal", 240, 1080)
    opened = datetime(2026, 12, 4, 16, 0, tzinfo=LONDON)
    ticket = _ticket(customer, opened, "urgent")
    with at(opened + timedelta(minutes=30)):
        services.message_add(ticket=ticket, body="Which order?", author_user=agent)
        services.ticket_update(ticket=ticket, status="pending")
    with at(MON_09):
        services.ticket_update(ticket=ticket, status="open")
        services.ticket_update(ticket=ticket, priority="normal")
    ticket.refresh_from_db()
    assert ticket.sla_paused_seconds == 90 * 60
    assert ticket.resolution_due_at == datetime(2026, 12, 8, 17, 30, tzinfo=LONDON)


def test_a_stop_that_ends_while_no_policy_matches_counts_for_the_next_policy(
    customer, agent, office
):
    """A Low ticket (no Low policy) pending Monday 09:00 to Thursday 09:00, then raised to
    High (office, 8 h): the 27 office hours it was stopped count (before, the stop was
    dropped and the ticket was breached at once)."""
    _policy(office, "High", "high", 60, 480)
    monday = datetime(2026, 11, 30, 9, 0, tzinfo=LONDON)
    thursday = datetime(2026, 12, 3, 9, 0, tzinfo=LONDON)
    ticket = _ticket(customer, monday, "low")
    assert ticket.sla_policy_id is None
    with at(monday):
        services.message_add(ticket=ticket, body="Which order?", author_user=agent)
        services.ticket_update(ticket=ticket, status="pending")
    with at(thursday):
        services.message_add(
            ticket=ticket, body="#123", direction=Direction.INBOUND, author_customer=customer
        )
        services.ticket_update(ticket=ticket, priority="high")
    ticket.refresh_from_db()
    assert ticket.sla_paused_seconds == 27 * 3600
    assert ticket.resolution_due_at == datetime(2026, 12, 3, 17, 0, tzinfo=LONDON)
    assert sla_services.sla_check(now=thursday + timedelta(minutes=1)).recorded == []


def test_a_ticket_stopped_before_the_stops_were_recorded_keeps_its_number(customer, office, always):
    """Data from before ``sla_pauses``: only ``sla_paused_seconds``. It keeps counting as
    it is (whatever the calendar), and is kept when the next stop is recorded."""
    _policy(office, "High", "high", 60, 480)
    _policy(always, "Urgent", "urgent", 30, 240)
    ticket = _ticket(customer, FRI_14, "high")
    Ticket.objects.filter(pk=ticket.pk).update(sla_paused_seconds=3600, sla_pauses=[])
    ticket.refresh_from_db()
    with at(FRI_14 + timedelta(minutes=5)):
        services.ticket_update(ticket=ticket, priority="urgent")
    ticket.refresh_from_db()
    assert ticket.resolution_due_at == FRI_14 + timedelta(hours=5)
    assert ticket.sla_paused_seconds == 3600
    with at(FRI_14 + timedelta(minutes=10)):
        services.ticket_update(ticket=ticket, status="pending")
    with at(FRI_14 + timedelta(minutes=40)):
        services.ticket_update(ticket=ticket, status="open")
    ticket.refresh_from_db()
    assert ticket.sla_pauses[0] == {"seconds": 3600}
    assert ticket.sla_paused_seconds == 3600 + 30 * 60
    assert ticket.resolution_due_at == FRI_14 + timedelta(hours=5, minutes=30)


def test_a_ticket_resolved_without_a_reply_and_reopened_days_later_is_not_breached(
    customer, agent, always
):
    """Resolved 10 minutes after opening (solved by phone), the customer writes again
    three days later: the first-response clock stood still while it was resolved, so 50
    minutes of the hour are left. Before, the checker recorded a breach (and the alerting
    paged) at once. The checker, ``sla_due_q`` and the badge agree."""
    _policy(always, "High", "high", 60, 480)
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ticket = _ticket(customer, opened, "high")
    with at(opened + timedelta(minutes=10)):
        services.ticket_update(ticket=ticket, status="resolved", actor=agent)
    later = opened + timedelta(days=3)
    with at(later):
        services.message_add(
            ticket=ticket,
            body="One more thing",
            direction=Direction.INBOUND,
            author_customer=customer,
        )
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.first_response_due_at == later + timedelta(minutes=50)
    now = later + timedelta(seconds=30)
    assert sla_services.sla_check(now=now).recorded == []
    assert not Ticket.objects.filter(sla_due_q(before=now), pk=ticket.pk).exists()
    assert _ticket_sla_due(ticket) == later + timedelta(minutes=50)
    # ... and when the 50 minutes are up, all three see the breach
    due = later + timedelta(minutes=50)
    assert Ticket.objects.filter(sla_due_q(before=due), pk=ticket.pk).exists()
    assert sla_services.sla_check(now=due).recorded == [(ticket.pk, "first_response", "breached")]


def test_the_first_response_clock_runs_while_pending_and_stops_while_resolved(
    customer, agent, always
):
    """Pending (waiting on the customer) does not stop the first-response clock; the
    time resolved does: a ticket pending 20 minutes then resolved 2 hours, reopened."""
    _policy(always, "High", "high", 60, 480)
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ticket = _ticket(customer, opened, "high")
    with at(opened + timedelta(minutes=5)):
        services.ticket_update(ticket=ticket, status="pending", actor=agent)
    with at(opened + timedelta(minutes=25)):
        services.ticket_update(ticket=ticket, status="resolved", actor=agent)
    with at(opened + timedelta(minutes=145)):
        services.ticket_update(ticket=ticket, status="open", actor=agent)
    ticket.refresh_from_db()
    assert ticket.first_response_due_at == opened + timedelta(minutes=60 + 120)
    assert ticket.resolution_due_at == opened + timedelta(minutes=480 + 140)


def test_a_first_reply_sent_while_resolved_is_judged_by_the_clock_that_ran(customer, agent, always):
    """Resolved unanswered after 10 minutes, the agent writes to the customer a day later
    without reopening: 10 minutes of the hour were used, so the reply is in time (before,
    a late breach was recorded), and the ticket page and attainment say "met"."""
    _policy(always, "High", "high", 60, 480)
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ticket = _ticket(customer, opened, "high")
    with at(opened + timedelta(minutes=10)):
        services.ticket_update(ticket=ticket, status="resolved", actor=agent)
    replied = opened + timedelta(days=1)
    with at(replied):
        services.message_add(ticket=ticket, body="Following up", author_user=agent)
    ticket.refresh_from_db()
    assert ticket.first_response_at == replied
    assert ticket.first_response_due_at == replied + timedelta(minutes=50)
    assert not SlaEvent.objects.filter(ticket=ticket).exists()
    with at(replied + timedelta(hours=1)):
        services.ticket_update(ticket=ticket, status="open", actor=agent)
    ticket.refresh_from_db()
    assert ticket.first_response_due_at == replied + timedelta(minutes=50)  # unchanged
    stats = selectors.sla_attainment(start=opened, end=opened + timedelta(days=2))
    assert stats["first_response"] == {"met": 1, "breached": 0, "attainment": 1.0}


def test_a_late_first_reply_stays_late_after_a_stop(customer, agent, always):
    """Stops after the first reply do not move its due time: a missed target stays
    missed when the ticket is resolved and reopened."""
    _policy(always, "High", "high", 60, 480)
    opened = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ticket = _ticket(customer, opened, "high")
    with at(opened + timedelta(minutes=90)):
        services.message_add(ticket=ticket, body="Sorry for the wait", author_user=agent)
        services.ticket_update(ticket=ticket, status="resolved", actor=agent)
    with at(opened + timedelta(days=2)):
        services.ticket_update(ticket=ticket, status="open", actor=agent)
    ticket.refresh_from_db()
    assert ticket.first_response_due_at == opened + timedelta(minutes=60)
