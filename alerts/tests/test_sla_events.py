"""``sla.warning`` / ``sla.breached`` outbox events (recorded by the SLA checker; recorded
here by hand, contract16) raise one alert per (ticket, target), notified through the
delivery engine; acknowledging and resolving are recorded and notified."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.db import transaction

from alerts.models import Alert, AlertState, AlertTarget, TargetKind
from alerts.services import alert_acknowledge, alert_resolve
from support.delivery.models import Attempt, Delivery
from support.events import event_record
from support.models import DeliveryStatus, OutboxEvent
from support.services import outbox_relay


def _payload(**extra: Any) -> dict[str, Any]:
    return {
        "ticket_id": 42,
        "ticket_ref": "T-42",
        "target": "first_response",
        "due_at": "2026-12-03T10:00:00+00:00",
        "priority": "urgent",
        "team_id": 3,
        "policy": "Urgent 1h",
        "escalation": ["priority raised to urgent"],
        **extra,
    }


def _record(event_type: str, **extra: Any) -> OutboxEvent:
    with transaction.atomic():
        return event_record(
            event_type, aggregate_type="ticket", aggregate_id=42, payload=_payload(**extra)
        )


def _relay(capture: Any) -> None:
    with capture(execute=True):  # the deliveries' attempts run after the relay's commit
        outbox_relay()


@pytest.mark.django_db
def test_sla_warning_then_breach_raise_one_alert_per_ticket_and_target(
    supervisor, django_capture_on_commit_callbacks
):
    email = AlertTarget.objects.create(
        name="Supervisors", kind=TargetKind.EMAIL, severities=["critical", "warning"]
    )

    warning = _record("sla.warning")
    _relay(django_capture_on_commit_callbacks)

    alert = Alert.objects.get()
    assert (alert.fingerprint, alert.severity, alert.state) == (
        "sla:42:first_response",
        "warning",
        AlertState.FIRING,
    )
    assert alert.title == "SLA at risk: first response on ticket T-42"
    assert "Escalation: priority raised to urgent." in alert.summary
    # the due time as people read it (the site's time zone), not the event's ISO string
    assert "is due at 2026-12-03 10:00 UTC." in alert.summary
    assert (alert.subject_type, alert.subject_id) == ("ticket", "42")
    [delivery] = Delivery.objects.all()
    assert (delivery.target_kind, delivery.status) == ("alert_email", DeliveryStatus.SUCCEEDED)
    assert Attempt.objects.filter(delivery=delivery).count() == 1
    assert mail.outbox[0].subject.startswith("[Support alert] [FIRING] [warning] SLA at risk")

    # Delivered again (at least once): nothing changes.
    OutboxEvent.objects.filter(pk=warning.pk).update(delivered_at=None)
    _relay(django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1
    assert Delivery.objects.count() == 1

    # The breach escalates the same alert to critical, notified again.
    _record("sla.breached")
    _relay(django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert Alert.objects.count() == 1
    assert (alert.severity, alert.title) == (
        "critical",
        "SLA breached: first response on ticket T-42",
    )
    assert [e.action for e in alert.history.all()] == ["fired", "escalated"]
    assert Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 2

    # Another target of the same ticket is another alert.
    _record("sla.breached", target="resolution")
    _relay(django_capture_on_commit_callbacks)
    assert sorted(Alert.objects.values_list("fingerprint", "severity")) == [
        ("sla:42:first_response", "critical"),
        ("sla:42:resolution", "critical"),
    ]

    # Acknowledged and resolved by a supervisor: recorded, and notified.
    with django_capture_on_commit_callbacks(execute=True):
        alert_acknowledge(alert_id=alert.pk, actor=supervisor, note="On it")
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(alert_id=alert.pk, actor=supervisor)
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by, alert.resolved_by) == (
        AlertState.RESOLVED,
        supervisor,
        supervisor,
    )
    history = [(e.action, e.from_state, e.to_state, e.actor) for e in alert.history.all()]
    assert history == [
        ("fired", "", "firing", None),
        ("escalated", "firing", "firing", None),
        ("acknowledged", "firing", "acknowledged", supervisor),
        ("resolved", "acknowledged", "resolved", supervisor),
    ]
    subjects = [m.subject for m in mail.outbox]
    assert subjects[-2:] == [
        "[Support alert] [ACKNOWLEDGED by supervisor] [critical] SLA breached: first response "
        "on ticket T-42",
        "[Support alert] [RESOLVED by supervisor] [critical] SLA breached: first response "
        "on ticket T-42",
    ]
    assert email.pk in alert.notified_target_ids


@pytest.mark.django_db
def test_an_sla_event_without_ticket_or_target_is_logged_and_skipped(
    django_capture_on_commit_callbacks, caplog
):
    _record("sla.warning", target="")
    _relay(django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()
    assert OutboxEvent.objects.get().delivered_at is not None
    assert "without ticket or target" in caplog.text


@pytest.mark.parametrize(
    ("due_at", "shown"),
    [
        ("2026-12-04T08:16:22.439206Z", "2026-12-04 08:16 UTC"),
        ("2026-12-04T09:16:22+01:00", "2026-12-04 08:16 UTC"),
        ("2026-12-04T08:16:22", "2026-12-04 08:16 UTC"),
        ("soon", "soon"),
        ("2026-13-45T25:00:00", "2026-13-45T25:00:00"),
        (None, "?"),
    ],
)
def test_sla_due_times_read_as_people_write_them(due_at: Any, shown: str) -> None:
    from alerts.services import _readable_time

    assert _readable_time(due_at) == shown
