"""The SLA alert subscribers only enqueue (docs/architecture.md, "Subscribers only
enqueue"): no alert is locked or written in the outbox relay's transaction; the tasks
raise and resolve the alerts once the batch has committed, once however often they are
delivered, with bounded retries when the database goes away."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.db import transaction

from alerts.models import Alert, AlertState, AlertTarget, TargetKind
from alerts.tasks import sla_alerts_resolve_task, sla_event_handle_task
from support.db import DATABASE_GONE
from support.delivery.models import Delivery
from support.events import event_record
from support.models import OutboxEvent
from support.services import outbox_relay

pytestmark = pytest.mark.django_db


def _enqueued(after_commit: list[Any]) -> list[Any]:
    return [c for c in after_commit if c.__qualname__.startswith("subscriber_task_enqueue")]


def _sla_event(event_type: str = "sla.warning", **payload: Any) -> OutboxEvent:
    with transaction.atomic():
        return event_record(
            event_type,
            aggregate_type="ticket",
            aggregate_id=42,
            payload={
                "ticket_id": 42,
                "ticket_ref": "T-42",
                "target": "first_response",
                "due_at": "2026-12-03T10:00:00+00:00",
                **payload,
            },
        )


def test_the_relay_only_enqueues_the_sla_alert_task(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """In the relay's transaction no alert is written (nor its notification): the task
    starts once the batch commits, and it raises the alert."""
    AlertTarget.objects.create(name="Supervisors", kind=TargetKind.EMAIL, severities=["warning"])
    _sla_event()
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        assert outbox_relay() == 1
        assert not Alert.objects.exists()  # not in the relay's transaction
        assert not Delivery.objects.exists()
    assert OutboxEvent.objects.get().delivered_at is not None
    assert len(_enqueued(after_commit)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        for callback in after_commit:
            callback()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity) == ("sla:42:first_response", "warning")
    assert Delivery.objects.count() == 1


def test_an_sla_event_delivered_twice_raises_one_alert(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """At least once, twice over: the relay delivers the event again, and the task itself
    (acks_late) runs again; one alert, one notification, the event id kept once."""
    AlertTarget.objects.create(name="Supervisors", kind=TargetKind.EMAIL, severities=["warning"])
    event = _sla_event()
    for _ in range(2):
        OutboxEvent.objects.filter(pk=event.pk).update(delivered_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            outbox_relay()
    alert = Alert.objects.get()
    args = (event.pk, event.event_type, dict(event.payload))
    with django_capture_on_commit_callbacks(execute=True):
        assert sla_event_handle_task.delay(*args).get() is None  # its work was done
    assert Alert.objects.get() == alert
    assert alert.details["events"] == [event.pk]
    assert [e.action for e in alert.history.all()] == ["fired"]
    assert Delivery.objects.count() == 1


def test_the_relay_only_enqueues_resolving_a_stopped_clocks_alert(
    agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A ticket event of a ticket with an open SLA alert: the relay only reads (is there
    one?) and enqueues; the task resolves it. A batch whose tickets have none enqueues
    nothing."""
    from tickets import services as ticket_services
    from tickets.models import Customer

    customer = Customer.objects.create(email="ada@example.org", name="Ada")
    quiet = ticket_services.ticket_create(customer=customer, subject="fine", body="hi")
    with (
        mock.patch.object(sla_alerts_resolve_task, "delay") as resolve,
        django_capture_on_commit_callbacks(execute=True),
    ):
        outbox_relay()
    resolve.assert_not_called()
    ticket = ticket_services.ticket_create(customer=customer, subject="help", body="hi")
    with django_capture_on_commit_callbacks(execute=True):
        sla_event_handle_task.delay(
            999, "sla.warning", {"ticket_id": ticket.pk, "target": "resolution"}
        )
    alert = Alert.objects.get()
    ticket_services.ticket_update(ticket=ticket, actor=agent, status="resolved")
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        outbox_relay()
        alert.refresh_from_db()
        assert alert.state == AlertState.FIRING  # not in the relay's transaction
    with django_capture_on_commit_callbacks(execute=True):
        for callback in after_commit:
            callback()
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert quiet.pk != ticket.pk  # its events came in the first batch


@pytest.mark.parametrize("task", [sla_event_handle_task, sla_alerts_resolve_task])
def test_the_tasks_retry_the_database_going_away_a_bounded_number_of_times(task: Any) -> None:
    assert task.autoretry_for == DATABASE_GONE
    assert (task.max_retries, task.acks_late) == (3, True)
    assert task.retry_backoff_max == 60


# --- an SLA event whose task failed: the rule evaluation raises its alert ---------------
#
# The task gives up after its 3 retries (a database failover outlasts them); the breach is
# recorded (SlaEvent) and its outbox event delivered, so nothing else tries again: the
# per-minute rule evaluation raises the alert of every recent SLA event that has none.


def _sla_ticket(customer: Any, *, due_in_minutes: float) -> Any:
    """A ticket of a 24/7 policy whose first response is due ``due_in_minutes`` from now
    (negative: overdue)."""
    from datetime import timedelta

    from django.utils import timezone

    from tickets import services as ticket_services
    from tickets.models import BusinessCalendar, SlaPolicy, Ticket

    if not SlaPolicy.objects.filter(priority="high").exists():
        calendar = BusinessCalendar.objects.create(name="24/7", timezone="UTC", is_24_7=True)
        SlaPolicy.objects.create(
            name="High",
            priority="high",
            calendar=calendar,
            first_response_minutes=60,
            resolution_minutes=24 * 60,
        )
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Help", body="hi", priority="high"
    )
    Ticket.objects.filter(pk=ticket.pk).update(
        first_response_due_at=timezone.now() + timedelta(minutes=due_in_minutes)
    )
    return Ticket.objects.get(pk=ticket.pk)


def _check_and_relay(capture: Any) -> None:
    """The SLA checker's run, then the outbox relay (its subscribers' tasks run once the
    relay's batch commits, as on a worker)."""
    from tickets.services.sla import sla_check

    sla_check()
    with capture(execute=True):
        outbox_relay()


@pytest.fixture
def handler_down(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The task's handler meets a database that is away (a failover) on every try; the
    calls are counted. The rule evaluation calls the service itself, once it is back."""
    from django.db import OperationalError

    import alerts.tasks

    calls: list[int] = []

    def down(*, event_id: int, event_type: str, payload: dict[str, Any]) -> Any:
        calls.append(event_id)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(alerts.tasks, "sla_event_handle", down)
    return calls


def _evaluate() -> Any:
    from alerts.services import alert_rules_evaluate

    return alert_rules_evaluate()


def test_a_breach_whose_alert_task_failed_is_alerted_by_the_next_evaluation(
    customer: Any,
    handler_down: list[int],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The review's probe: the breach is recorded, its task spends its retries on a lost
    database, and sla_check, the relay and the evaluation run again: no alert, ever.
    Now the evaluation raises it, once: again, and the task delivered late, add
    nothing."""
    from tickets.models import SlaEvent

    monkeypatch.setitem(sla_event_handle_task.app.conf, "task_eager_propagates", False)
    AlertTarget.objects.create(name="Supervisors", kind=TargetKind.EMAIL, severities=["critical"])
    ticket = _sla_ticket(customer, due_in_minutes=-5)
    _check_and_relay(django_capture_on_commit_callbacks)
    breach = OutboxEvent.objects.get(event_type="sla.breached")
    assert handler_down == [breach.pk] * 4  # the first try and its 3 retries
    assert SlaEvent.objects.filter(ticket=ticket, kind="breached").count() == 1
    assert not Alert.objects.exists()
    _check_and_relay(django_capture_on_commit_callbacks)  # nothing there tries again
    assert not Alert.objects.exists()

    report = _evaluate()
    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity, alert.state) == (
        f"sla:{ticket.pk}:first_response",
        "critical",
        AlertState.FIRING,
    )
    assert alert.title == f"SLA breached: first response on ticket {ticket.number}"
    assert alert.details["events"] == [breach.pk]
    assert report.sla_raised == [alert.pk]
    [fired] = alert.history.all()
    assert fired.action == "fired"
    assert fired.note == f"sla.breached (outbox event {breach.pk}; raised by the rule evaluation)"
    assert Delivery.objects.count() == 1

    assert _evaluate().sla_raised == []  # once
    monkeypatch.undo()  # the database is back: the task, delivered late, finds it done
    with django_capture_on_commit_callbacks(execute=True):
        args = (breach.pk, breach.event_type, dict(breach.payload))
        assert sla_event_handle_task.delay(*args).get() is None
    assert Alert.objects.get() == alert
    assert [e.action for e in alert.history.all()] == ["fired"]
    assert Delivery.objects.count() == 1


def test_the_evaluation_leaves_an_alert_its_task_raised_and_escalates_for_a_lost_breach(
    customer: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning's task raised its alert: the evaluation adds nothing (no second alert,
    no history, no notification). The breach's task fails: the evaluation escalates the
    same alert to critical, as the task would have."""
    from datetime import timedelta

    from django.db import OperationalError
    from django.utils import timezone

    import alerts.tasks
    from tickets.models import Ticket

    monkeypatch.setitem(sla_event_handle_task.app.conf, "task_eager_propagates", False)
    AlertTarget.objects.create(
        name="Supervisors", kind=TargetKind.EMAIL, severities=["critical", "warning"]
    )
    ticket = _sla_ticket(customer, due_in_minutes=10)
    _check_and_relay(django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert alert.severity == "warning"
    assert _evaluate().sla_raised == []
    assert [e.action for e in alert.history.all()] == ["fired"]
    assert Delivery.objects.count() == 1

    def down(**kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(alerts.tasks, "sla_event_handle", down)
    Ticket.objects.filter(pk=ticket.pk).update(
        first_response_due_at=timezone.now() - timedelta(minutes=1)
    )
    _check_and_relay(django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.severity == "warning"  # the breach's task failed

    assert _evaluate().sla_raised == [alert.pk]
    alert.refresh_from_db()
    assert (Alert.objects.count(), alert.severity) == (1, "critical")
    warning, breach = OutboxEvent.objects.filter(event_type__startswith="sla.").order_by("pk")
    assert alert.details["events"] == [warning.pk, breach.pk]
    assert [e.action for e in alert.history.all()] == ["fired", "escalated"]
    assert Delivery.objects.count() == 2
    assert _evaluate().sla_raised == []
    assert Delivery.objects.count() == 2


def test_the_evaluation_raises_nothing_for_stopped_clocks_old_or_unpublished_events(
    customer: Any,
    agent: Any,
    supervisor: Any,
    handler_down: list[int],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a recent event of a clock still running, published and never alerted, is
    raised: not once the ticket was answered or resolved, nor a breach recorded when the
    clock stopped late (``stopped_at``), nor an event older than the look-back, nor the
    demo's history rows (recorded without an event, on purpose), nor a warning whose due
    time left the window, nor a breach whose alert a person resolved."""
    from datetime import timedelta

    from django.utils import timezone

    from alerts.services import alert_resolve, sla_event_handle
    from tickets import services as ticket_services
    from tickets.models import SlaEvent, Ticket

    monkeypatch.setitem(sla_event_handle_task.app.conf, "task_eager_propagates", False)
    answered = _sla_ticket(customer, due_in_minutes=-5)
    resolved = _sla_ticket(customer, due_in_minutes=-5)
    old = _sla_ticket(customer, due_in_minutes=-5)
    warned = _sla_ticket(customer, due_in_minutes=10)
    handled = _sla_ticket(customer, due_in_minutes=-5)
    _check_and_relay(django_capture_on_commit_callbacks)
    assert len(handler_down) == 5 * 4  # every task failed
    late = _sla_ticket(customer, due_in_minutes=-5)
    ticket_services.message_add(ticket=late, body="Sorry for the wait", author_user=agent)
    assert SlaEvent.objects.get(ticket=late).stopped_at is not None  # recorded late
    history = _sla_ticket(customer, due_in_minutes=-5)
    SlaEvent.objects.create(
        ticket=history, target="first_response", kind="breached", due_at=timezone.now()
    )
    ticket_services.message_add(ticket=answered, body="On it", author_user=agent)
    ticket_services.ticket_update(ticket=resolved, actor=agent, status="resolved")
    SlaEvent.objects.filter(ticket=old).update(created_at=timezone.now() - timedelta(days=2))
    Ticket.objects.filter(pk=warned.pk).update(
        first_response_due_at=timezone.now() + timedelta(hours=3)
    )
    event = OutboxEvent.objects.get(event_type="sla.breached", aggregate_id=str(handled.pk))
    raised = sla_event_handle(
        event_id=event.pk, event_type=event.event_type, payload=dict(event.payload)
    )
    assert raised is not None
    alert_resolve(alert_id=raised.alert.pk, actor=supervisor, note="Handled by phone")
    _check_and_relay(django_capture_on_commit_callbacks)  # sla.breached of `late` pages no one

    assert _evaluate().sla_raised == []
    assert list(Alert.objects.values_list("pk", flat=True)) == [raised.alert.pk]

    lost = _sla_ticket(customer, due_in_minutes=-5)  # and one that qualifies: only it
    _check_and_relay(django_capture_on_commit_callbacks)
    [alert_id] = _evaluate().sla_raised
    assert Alert.objects.get(pk=alert_id).fingerprint == f"sla:{lost.pk}:first_response"
    assert Alert.objects.count() == 2


def test_the_evaluation_raises_a_bounded_batch_a_run_oldest_first(
    customer: Any,
    handler_down: list[int],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import alerts.services

    monkeypatch.setitem(sla_event_handle_task.app.conf, "task_eager_propagates", False)
    monkeypatch.setattr(alerts.services, "SLA_CATCH_UP_BATCH", 1)
    first = _sla_ticket(customer, due_in_minutes=-10)
    second = _sla_ticket(customer, due_in_minutes=-5)
    _check_and_relay(django_capture_on_commit_callbacks)
    raised = [_evaluate().sla_raised for _ in range(3)]
    assert [len(r) for r in raised] == [1, 1, 0]
    fingerprints = [Alert.objects.get(pk=r[0]).fingerprint for r in raised[:2]]
    assert fingerprints == [f"sla:{first.pk}:first_response", f"sla:{second.pk}:first_response"]
