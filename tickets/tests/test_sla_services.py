"""SLA: due times on tickets, the stopped resolution clock, the checker, the task, and
attainment."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from support.models import OutboxEvent
from tickets import selectors, services
from tickets.models import (
    BusinessCalendar,
    BusinessHours,
    Direction,
    Message,
    MessageKind,
    SlaEvent,
    SlaPolicy,
    Team,
    Ticket,
)
from tickets.services import sla as sla_services
from tickets.tasks import sla_check_task

pytestmark = pytest.mark.django_db


def _dt(value: datetime | None) -> datetime:
    assert value is not None
    return value


@pytest.fixture
def always() -> BusinessCalendar:
    return BusinessCalendar.objects.create(name="24/7", timezone="UTC", is_24_7=True)


def _policy(calendar, name="High", priority="high", fr=60, res=240, **extra) -> SlaPolicy:
    return SlaPolicy.objects.create(
        name=name,
        priority=priority,
        calendar=calendar,
        first_response_minutes=fr,
        resolution_minutes=res,
        **extra,
    )


def _ticket(customer, **kw) -> Ticket:
    return services.ticket_create(customer=customer, subject="Help", body="hi", **kw)


def _backdate(ticket: Ticket, minutes: int) -> Ticket:
    """As if the ticket had been opened ``minutes`` ago (and its due times with it)."""
    delta = timedelta(minutes=minutes)
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=ticket.created_at - delta,
        first_response_due_at=ticket.first_response_due_at - delta
        if ticket.first_response_due_at
        else None,
        resolution_due_at=ticket.resolution_due_at - delta if ticket.resolution_due_at else None,
    )
    return Ticket.objects.get(pk=ticket.pk)


# --- due times --------------------------------------------------------------------------


def test_ticket_create_sets_due_times_from_the_matching_policy(customer, always):
    policy = _policy(always)
    ticket = _ticket(customer, priority="high")
    stored = Ticket.objects.get(pk=ticket.pk)
    assert stored.sla_policy_id == policy.pk
    assert _dt(stored.first_response_due_at) - stored.created_at == pytest.approx(
        timedelta(minutes=60), abs=timedelta(seconds=1)
    )
    assert _dt(stored.resolution_due_at) - stored.created_at == pytest.approx(
        timedelta(minutes=240), abs=timedelta(seconds=1)
    )
    low = Ticket.objects.get(pk=_ticket(customer, priority="low").pk)
    assert (low.sla_policy_id, low.first_response_due_at, low.resolution_due_at) == (
        None,
        None,
        None,
    )


def test_ticket_create_reads_no_policy_while_cached(customer, always):
    from django.test.utils import CaptureQueriesContext

    _policy(always)
    _ticket(customer, priority="high")  # loads the cache
    with CaptureQueriesContext(connection) as queries:
        _ticket(customer, priority="high")
    assert not [q for q in queries.captured_queries if "tickets_slapolicy" in q["sql"]]


def test_priority_and_team_changes_recompute_the_due_times(customer, always):
    _policy(always)
    _policy(always, name="Urgent", priority="urgent", fr=15, res=60)
    team = Team.objects.create(name="Billing", slug="billing")
    team_policy = _policy(always, name="High billing", fr=30, res=90, team=team)
    ticket = _ticket(customer, priority="high")
    created = Ticket.objects.get(pk=ticket.pk).created_at

    ticket = services.ticket_update(ticket=ticket, priority="urgent")
    ticket.refresh_from_db()
    assert ticket.first_response_due_at == created + timedelta(minutes=15)
    assert ticket.resolution_due_at == created + timedelta(minutes=60)

    services.ticket_update(ticket=ticket, priority="high", team=team)
    ticket.refresh_from_db()
    assert ticket.sla_policy_id == team_policy.pk
    assert ticket.first_response_due_at == created + timedelta(minutes=30)

    services.ticket_update(ticket=ticket, priority="normal")
    ticket.refresh_from_db()
    assert (ticket.sla_policy_id, ticket.first_response_due_at) == (None, None)


def test_a_resolved_ticket_refiled_keeps_the_due_times_it_was_judged_by(customer, always):
    """Resolved in 3 hours against a 4-hour target, then re-filed as urgent (1 hour): the
    recompute made it a breach after the fact (and a team change could do the same). The
    clock is over; a reopened ticket follows its priority and team again."""
    policy = _policy(always)
    _policy(always, name="Urgent", priority="urgent", fr=15, res=60)
    ticket = _ticket(customer, priority="high")
    judged = Ticket.objects.get(pk=ticket.pk)
    services.ticket_update(ticket=ticket, status="resolved")
    services.ticket_update(ticket=ticket, priority="urgent")
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.sla_policy_id) == ("urgent", policy.pk)
    assert ticket.resolution_due_at == judged.resolution_due_at
    assert ticket.first_response_due_at == judged.first_response_due_at
    services.ticket_update(ticket=ticket, status="open", priority="high")
    services.ticket_update(ticket=ticket, priority="urgent")
    ticket.refresh_from_db()
    assert ticket.resolution_due_at == judged.created_at + timedelta(minutes=60)


def test_pending_stops_the_resolution_clock_and_reopening_moves_the_due_time(
    customer, always, agent
):
    _policy(always)
    ticket = _ticket(customer, priority="high")
    services.message_add(ticket=ticket, body="On it", author_user=agent)
    ticket.refresh_from_db()
    due = ticket.resolution_due_at
    services.ticket_update(ticket=ticket, status="pending")
    ticket.refresh_from_db()
    assert ticket.sla_paused_at is not None
    Ticket.objects.filter(pk=ticket.pk).update(
        sla_paused_at=ticket.sla_paused_at - timedelta(minutes=45)
    )
    services.ticket_update(ticket=ticket, status="open")
    ticket.refresh_from_db()
    assert ticket.sla_paused_at is None
    assert ticket.sla_paused_seconds == pytest.approx(45 * 60, abs=2)
    assert ticket.resolution_due_at - due == pytest.approx(
        timedelta(minutes=45), abs=timedelta(seconds=2)
    )
    assert ticket.first_response_due_at is not None  # the first-response clock never stops


def test_a_customer_reply_to_a_pending_ticket_restarts_the_clock(customer, always, agent):
    _policy(always)
    ticket = _ticket(customer, priority="high")
    services.ticket_update(ticket=ticket, status="pending")
    ticket.refresh_from_db()
    Ticket.objects.filter(pk=ticket.pk).update(
        sla_paused_at=_dt(ticket.sla_paused_at) - timedelta(minutes=20)
    )
    due = _dt(ticket.resolution_due_at)
    services.message_add(
        ticket=ticket, body="Here it is", direction=Direction.INBOUND, author_customer=customer
    )
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.sla_paused_at is None
    assert _dt(ticket.resolution_due_at) - due == pytest.approx(
        timedelta(minutes=20), abs=timedelta(seconds=2)
    )


def test_business_hours_calendar_drives_the_due_time(customer):
    cal = BusinessCalendar.objects.create(name="Office", timezone="Europe/Berlin")
    for day in range(5):
        BusinessHours.objects.create(
            calendar=cal, weekday=day, opens_at=time(9), closes_at=time(17)
        )
    _policy(cal, fr=120, res=None)
    friday_late = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # 16:00 in Berlin
    with mock.patch("django.utils.timezone.now", return_value=friday_late):
        ticket = _ticket(customer, priority="high")
    assert ticket.first_response_due_at == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Mon 10:00
    assert ticket.resolution_due_at is None


# --- the checker --------------------------------------------------------------------------


def test_a_breach_is_recorded_once_with_event_timeline_and_escalation(customer, always):
    team = Team.objects.create(name="Escalations", slug="esc")
    _policy(
        always,
        escalate_raise_priority=True,
        escalate_to_team=team,
        escalate_on="breached",
    )
    ticket = _backdate(_ticket(customer, priority="high"), 61)  # first response late

    result = sla_services.sla_check()

    assert result.recorded == [(ticket.pk, "first_response", "breached")]
    event = SlaEvent.objects.get()
    assert (event.target, event.kind, event.due_at) == (
        "first_response",
        "breached",
        ticket.first_response_due_at,
    )
    assert event.escalation == ["priority high → urgent", "team → Escalations"]
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.team_id) == ("urgent", team.pk)
    [outbox] = OutboxEvent.objects.filter(event_type__startswith="sla.")
    assert outbox.event_type == "sla.breached"
    assert (outbox.aggregate_type, str(outbox.aggregate_id)) == ("ticket", str(ticket.pk))
    assert outbox.payload == {
        "ticket_id": ticket.pk,
        "ticket_ref": ticket.number,
        "target": "first_response",
        "due_at": event.due_at.isoformat().replace("+00:00", "Z"),
        "priority": "high",
        "team_id": None,
        "policy": "High",
        "escalation": ["priority high → urgent", "team → Escalations"],
    }
    notes = list(
        Message.objects.filter(ticket=ticket, kind=MessageKind.SYSTEM).values_list(
            "body_text", flat=True
        )
    )
    assert any(n.startswith("SLA first response breached: due ") for n in notes)

    again = sla_services.sla_check()
    assert again.recorded == []
    assert SlaEvent.objects.count() == 1
    assert OutboxEvent.objects.filter(event_type__startswith="sla.").count() == 1


def test_warning_inside_the_window_then_breach(customer, always, settings):
    settings.SLA_WARNING_MINUTES = 30
    _policy(always, fr=60, res=None, escalate_on="never", escalate_raise_priority=True)
    ticket = _backdate(_ticket(customer, priority="high"), 20)  # 40 minutes left
    assert sla_services.sla_check().recorded == []
    ticket = _backdate(ticket, 15)  # 25 minutes left
    assert sla_services.sla_check().recorded == [(ticket.pk, "first_response", "warning")]
    assert list(
        OutboxEvent.objects.filter(event_type__startswith="sla.").values_list(
            "event_type", flat=True
        )
    ) == ["sla.warning"]
    ticket = _backdate(ticket, 30)  # 5 minutes late
    assert sla_services.sla_check().recorded == [(ticket.pk, "first_response", "breached")]
    ticket.refresh_from_db()
    assert ticket.priority == "high"  # escalate_on=never: alert only


def test_met_paused_and_closed_tickets_are_not_breached(customer, always, agent):
    _policy(always, fr=60, res=120)
    answered = _ticket(customer, priority="high")
    services.message_add(ticket=answered, body="Hello", author_user=agent)
    _backdate(answered, 90)  # first response met; resolution still 30 minutes away
    waiting = _ticket(customer, priority="high")
    services.message_add(ticket=waiting, body="Need your order number", author_user=agent)
    services.ticket_update(ticket=waiting, status="pending")
    _backdate(waiting, 500)
    resolved = _ticket(customer, priority="high")
    services.ticket_update(ticket=resolved, status="resolved")
    _backdate(resolved, 500)
    result = sla_services.sla_check()
    assert result.recorded == [(answered.pk, "resolution", "warning")]


def test_recording_twice_is_a_no_op_also_when_the_unique_constraint_decides(customer, always):
    _policy(always)
    ticket = _backdate(_ticket(customer, priority="high"), 61)
    first = sla_services.sla_event_record(
        ticket_id=ticket.pk, target="first_response", kind="breached"
    )
    assert first is not None
    # A second writer that passed the candidate query before the first committed:
    assert (
        sla_services.sla_event_record(ticket_id=ticket.pk, target="first_response", kind="breached")
        is None
    )
    assert SlaEvent.objects.count() == 1
    assert OutboxEvent.objects.filter(event_type="sla.breached").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_ticket_locked_by_another_transaction_is_left_for_the_next_run(customer, always):
    _policy(always)
    ticket = _backdate(_ticket(customer, priority="high"), 61)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import connections, transaction

        with transaction.atomic():
            Ticket.objects.select_for_update().get(pk=ticket.pk)
            locked.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        assert sla_services.sla_check().recorded == []
    finally:
        release.set()
        holder.join()
    assert sla_services.sla_check().recorded == [(ticket.pk, "first_response", "breached")]


def test_batches_are_bounded_and_most_overdue_first(customer, always):
    _policy(always, res=None)
    tickets = [_backdate(_ticket(customer, priority="high"), 61 + i) for i in range(3)]
    result = sla_services.sla_check(batch_size=2)
    assert [r[0] for r in result.recorded] == [tickets[2].pk, tickets[1].pk]
    assert [r[0] for r in sla_services.sla_check(batch_size=2).recorded] == [tickets[0].pk]


def test_the_beat_task_runs_the_checker(customer, always, settings):
    from support.settings import CELERY_BEAT_SCHEDULE

    assert CELERY_BEAT_SCHEDULE["sla-check"] == {
        "task": "tickets.tasks.sla_check_task",
        "schedule": 60.0,
    }
    _policy(always)
    _backdate(_ticket(customer, priority="high"), 61)
    assert sla_check_task.delay().get() == 1
    assert sla_check_task.delay().get() == 0


# --- attainment ---------------------------------------------------------------------------


def test_sla_attainment_counts_met_and_breached_in_the_window(customer, always, agent):
    team = Team.objects.create(name="Support", slug="support")
    _policy(always, fr=60, res=240)
    start = timezone.now() - timedelta(hours=1)
    on_time = _ticket(customer, priority="high", team=team)
    services.message_add(ticket=on_time, body="Hi", author_user=agent)
    services.ticket_update(ticket=on_time, status="resolved")
    late = _backdate(_ticket(customer, priority="high", team=team), 300)
    services.message_add(ticket=late, body="Sorry", author_user=agent)  # both late
    services.ticket_update(ticket=late, status="resolved")
    _backdate(_ticket(customer, priority="high"), 61)  # open, breached, other team
    _backdate(_ticket(customer, priority="high", channel="email"), 45)  # at risk
    end = timezone.now() + timedelta(seconds=1)

    result = selectors.sla_attainment(start=start, end=end)
    assert result == {
        "first_response": {"met": 1, "breached": 1, "attainment": 0.5},
        "resolution": {"met": 1, "breached": 1, "attainment": 0.5},
        "open_breached": 1,
        "open_at_risk": 1,
    }
    scoped = selectors.sla_attainment(start=start, end=end, team_ids=[team.pk])
    assert scoped["open_breached"] == 0
    assert scoped["first_response"]["met"] == 1
    by_channel = selectors.sla_attainment(start=start, end=end, channels=["email"])
    assert by_channel == {
        "first_response": {"met": 0, "breached": 0, "attainment": None},
        "resolution": {"met": 0, "breached": 0, "attainment": None},
        "open_breached": 0,
        "open_at_risk": 1,
    }
    earlier = selectors.sla_attainment(start=start - timedelta(days=2), end=start)
    assert earlier["first_response"] == {"met": 0, "breached": 0, "attainment": None}


# --- policy edits: the open tickets follow -----------------------------------------------


def test_reapply_moves_open_tickets_to_the_edited_policy_and_leaves_closed_ones(customer, always):
    policy = _policy(always, fr=60, res=240)
    running = _ticket(customer, priority="high")
    waiting = _ticket(customer, priority="high")
    services.ticket_update(ticket=waiting, actor=None, status="pending")
    done = _ticket(customer, priority="high")
    services.ticket_update(ticket=done, actor=None, status="resolved")
    done_due = Ticket.objects.get(pk=done.pk).first_response_due_at
    SlaPolicy.objects.filter(pk=policy.pk).update(first_response_minutes=15, resolution_minutes=60)

    assert sla_services.tickets_sla_reapply() == 2
    for ticket in (running, waiting):
        stored = Ticket.objects.get(pk=ticket.pk)
        assert _dt(stored.first_response_due_at) - stored.created_at == pytest.approx(
            timedelta(minutes=15), abs=timedelta(seconds=1)
        )
    stored = Ticket.objects.get(pk=running.pk)
    assert _dt(stored.resolution_due_at) - stored.created_at == pytest.approx(
        timedelta(minutes=60), abs=timedelta(seconds=1)
    )
    assert Ticket.objects.get(pk=done.pk).first_response_due_at == done_due
    # Idempotent: nothing left to change.
    assert sla_services.tickets_sla_reapply() == 0


def test_reapply_after_a_deactivated_policy_clears_due_times_and_the_checker_follows(
    customer, always
):
    policy = _policy(always, fr=60, res=240)
    ticket = _backdate(_ticket(customer, priority="high"), minutes=30)
    SlaPolicy.objects.filter(pk=policy.pk).update(first_response_minutes=10)
    assert sla_services.tickets_sla_reapply() == 1
    # 30 minutes old against a 10-minute target: the next check records the breach.
    recorded = sla_services.sla_check().recorded
    assert (ticket.pk, "first_response", "breached") in recorded
    SlaPolicy.objects.filter(pk=policy.pk).update(is_active=False)
    assert sla_services.tickets_sla_reapply() == 1
    stored = Ticket.objects.get(pk=ticket.pk)
    assert (stored.sla_policy_id, stored.first_response_due_at, stored.resolution_due_at) == (
        None,
        None,
        None,
    )
    # The breach already recorded stays in the ticket's history.
    assert SlaEvent.objects.filter(ticket=ticket, kind="breached").exists()


def test_reapply_works_through_batches_and_skips_merged_tickets(customer, always):
    policy = _policy(always, fr=60, res=240)
    tickets = [_ticket(customer, priority="high") for _ in range(5)]
    services.ticket_merge(source=tickets[4], target=tickets[0], actor=None)
    merged_due = Ticket.objects.get(pk=tickets[4].pk).first_response_due_at
    SlaPolicy.objects.filter(pk=policy.pk).update(first_response_minutes=5)
    assert sla_services.tickets_sla_reapply(batch_size=2) == 4
    assert Ticket.objects.get(pk=tickets[4].pk).first_response_due_at == merged_due


# --- a merge carries the source's first response over (review r5) ------------------------


def test_a_merge_carries_the_sources_first_response_to_an_unanswered_target(
    customer, always, agent
):
    """The target's only agent reply came from the merged source: the target was answered
    then, and the checker records no first-response breach for it."""
    _policy(always, fr=60, res=240)
    target = _backdate(_ticket(customer, priority="high"), minutes=120)
    source = _backdate(_ticket(customer, priority="high"), minutes=90)
    services.message_add(ticket=source, body="On it", author_user=agent)
    answered = Ticket.objects.get(pk=source.pk).first_response_at
    assert answered is not None
    assert Ticket.objects.get(pk=target.pk).first_response_at is None
    services.ticket_merge(source=source, target=target, actor=agent)
    merged = Ticket.objects.get(pk=target.pk)
    assert merged.first_response_at == answered
    assert (target.pk, "first_response", "breached") not in sla_services.sla_check().recorded
    event = OutboxEvent.objects.filter(
        event_type="ticket.updated", aggregate_id=str(target.pk)
    ).latest("id")
    assert event.payload["changes"]["first_response_at"] == [None, answered.isoformat()]


def test_a_merge_keeps_the_earlier_first_response_and_never_one_before_the_target(customer, agent):
    early = _ticket(customer)
    services.message_add(ticket=early, body="Answered early", author_user=agent)
    late_target = _backdate(_ticket(customer), minutes=0)
    Ticket.objects.filter(pk=early.pk).update(
        first_response_at=late_target.created_at - timedelta(hours=1)
    )
    # answered on the duplicate before the target existed: the target was answered at once
    services.ticket_merge(source=Ticket.objects.get(pk=early.pk), target=late_target, actor=agent)
    assert Ticket.objects.get(pk=late_target.pk).first_response_at == late_target.created_at

    answered_target = _ticket(customer)
    services.message_add(ticket=answered_target, body="First", author_user=agent)
    first = Ticket.objects.get(pk=answered_target.pk).first_response_at
    later = _ticket(customer)
    services.message_add(ticket=later, body="Second", author_user=agent)
    services.ticket_merge(source=later, target=answered_target, actor=agent)
    assert Ticket.objects.get(pk=answered_target.pk).first_response_at == first


# --- review probes: the stopped clock in business time ------------------------------------


def _london_office() -> BusinessCalendar:
    cal = BusinessCalendar.objects.create(name="London office", timezone="Europe/London")
    for day in range(5):
        BusinessHours.objects.create(
            calendar=cal, weekday=day, opens_at=time(9), closes_at=time(17)
        )
    return cal


def test_a_pending_weekend_across_the_clock_change_moves_the_due_time_by_business_time(
    customer,
):
    # Opened Friday 2026-03-27 16:00 GMT, 4 business hours to resolve: due Monday
    # 2026-03-30 12:00 BST. Pending from Friday 16:30 to Monday 09:30 BST (after the
    # clocks went forward): stopped one business hour, so due Monday 13:00 BST. A priority
    # change afterwards recomputes from creation and keeps the stopped hour.
    cal = _london_office()
    _policy(cal, res=240)
    _policy(cal, name="Normal", priority="normal", res=480)
    opened = datetime(2026, 3, 27, 16, 0, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=opened):
        ticket = _ticket(customer, priority="high")
    assert ticket.resolution_due_at == datetime(2026, 3, 30, 11, 0, tzinfo=UTC)
    ticket.status = "pending"
    sla_services.ticket_sla_status_change(
        ticket, before="open", now=datetime(2026, 3, 27, 16, 30, tzinfo=UTC)
    )
    ticket.status = "open"
    sla_services.ticket_sla_status_change(
        ticket, before="pending", now=datetime(2026, 3, 30, 8, 30, tzinfo=UTC)
    )
    assert ticket.sla_paused_seconds == 3600
    assert ticket.resolution_due_at == datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
    ticket.priority = "normal"
    sla_services.ticket_sla_recompute(ticket)
    # 8 business hours + the stopped one from Friday 16:00: Monday 17:00 BST
    assert ticket.resolution_due_at == datetime(2026, 3, 30, 16, 0, tzinfo=UTC)


def test_resuming_where_the_cached_policies_predate_the_tickets_policy_keeps_the_stop(
    customer, always
):
    # Another process created the policy (and the re-apply gave it to the ticket) less
    # than SLA_POLICY_CACHE_SECONDS ago: this process's cache does not know it yet.
    _policy(always, res=240)
    opened = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=opened):
        ticket = _ticket(customer, priority="high")
    ticket.status = "pending"
    sla_services.ticket_sla_status_change(ticket, before="open", now=opened)
    ticket.status = "open"
    with mock.patch.dict("tickets.sla._cache", {"at": 1e18, "policies": ()}):
        sla_services.ticket_sla_status_change(
            ticket, before="pending", now=opened + timedelta(minutes=45)
        )
    assert ticket.sla_paused_seconds == 45 * 60
    assert ticket.resolution_due_at == datetime(2026, 12, 7, 13, 45, tzinfo=UTC)


def test_a_due_time_passing_between_two_runs_is_breached_once_on_the_next(customer, always):
    _policy(always, fr=60, res=None)
    opened = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=opened):
        ticket = _ticket(customer, priority="high")
    due = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert ticket.first_response_due_at == due
    before = sla_services.sla_check(now=due - timedelta(seconds=30))
    assert before.recorded == [(ticket.pk, "first_response", "warning")]
    after = sla_services.sla_check(now=due + timedelta(minutes=7))  # the beat was late
    assert after.recorded == [(ticket.pk, "first_response", "breached")]
    again = sla_services.sla_check(now=due + timedelta(minutes=8))
    assert again.recorded == []
    assert list(
        SlaEvent.objects.filter(ticket=ticket).order_by("id").values_list("kind", "due_at")
    ) == [("warning", due), ("breached", due)]
    assert OutboxEvent.objects.filter(event_type="sla.breached").count() == 1


# --- clocks that stop late between two checker runs --------------------------------------


def test_a_clock_stopped_late_between_two_runs_records_its_breach_without_escalating(
    customer, always, agent
):
    """A first reply or a resolution just after the due time, before the next checker run
    saw the ticket overdue, was counted as missed by the attainment but had no SlaEvent
    and no ``sla.breached``: the checker looks at running clocks only."""
    team = Team.objects.create(name="Escalations", slug="esc")
    _policy(
        always,
        fr=60,
        res=120,
        escalate_raise_priority=True,
        escalate_to_team=team,
        escalate_on="breached",
    )
    ticket = _backdate(_ticket(customer, priority="high"), 61)  # first reply 1 minute late

    services.message_add(ticket=ticket, body="Sorry for the wait", author_user=agent)

    event = SlaEvent.objects.get()
    ticket.refresh_from_db()
    assert (event.target, event.kind, event.due_at) == (
        "first_response",
        "breached",
        ticket.first_response_due_at,
    )
    assert event.stopped_at == ticket.first_response_at
    assert event.escalation == []
    assert (ticket.priority, ticket.team_id) == ("high", None)  # answered: not escalated
    [outbox] = OutboxEvent.objects.filter(event_type__startswith="sla.")
    assert outbox.event_type == "sla.breached"
    assert outbox.payload["stopped_at"] == _dt(ticket.first_response_at).isoformat().replace(
        "+00:00", "Z"
    )
    assert outbox.payload["escalation"] == []
    notes = Message.objects.filter(ticket=ticket, kind=MessageKind.SYSTEM)
    assert any(
        n.startswith("SLA first response breached: due ") and ", answered " in n
        for n in notes.values_list("body_text", flat=True)
    )
    assert sla_services.sla_check().recorded == []  # the checker adds nothing after it

    _backdate(ticket, 60)  # now the resolution is an hour late, still unseen by a run
    services.ticket_update(ticket=Ticket.objects.get(pk=ticket.pk), status="resolved")
    resolution = SlaEvent.objects.get(target="resolution")
    ticket.refresh_from_db()
    assert (resolution.kind, resolution.stopped_at) == ("breached", ticket.resolved_at)
    assert ticket.priority == "high"
    assert OutboxEvent.objects.filter(event_type="sla.breached").count() == 2
    # the attainment and the recorded breaches now agree
    attainment = selectors.sla_attainment(
        start=timezone.now() - timedelta(hours=1), end=timezone.now()
    )
    assert attainment["first_response"]["breached"] == 1
    assert attainment["resolution"]["breached"] == 1


def test_clocks_stopped_in_time_or_already_breached_record_nothing_more(customer, always, agent):
    _policy(always, fr=60, res=120)
    on_time = _backdate(_ticket(customer, priority="high"), 59)
    services.message_add(ticket=on_time, body="Hello", author_user=agent)
    services.ticket_update(ticket=Ticket.objects.get(pk=on_time.pk), status="resolved")
    assert not SlaEvent.objects.filter(ticket=on_time).exists()

    seen = _backdate(_ticket(customer, priority="high"), 61)
    assert sla_services.sla_check().recorded == [(seen.pk, "first_response", "breached")]
    services.message_add(ticket=seen, body="Hello", author_user=agent)
    assert SlaEvent.objects.filter(ticket=seen).count() == 1
    assert SlaEvent.objects.get(ticket=seen).stopped_at is None
    # a second reply is no stop: nothing new
    services.message_add(ticket=seen, body="Anything else?", author_user=agent)
    assert OutboxEvent.objects.filter(event_type="sla.breached").count() == 1
