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
