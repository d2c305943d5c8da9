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
def test_a_breach_recorded_after_the_clock_stopped_pages_nobody(
    django_capture_on_commit_callbacks,
):
    """``sla_stopped_late`` records the breach of a clock that stopped late (the ticket
    answered or resolved): integrations get the event, but there is nothing to act on."""
    AlertTarget.objects.create(
        name="Supervisors", kind=TargetKind.EMAIL, severities=["critical", "warning"]
    )
    _record("sla.breached", stopped_at="2026-12-03T10:00:20Z", escalation=[])
    _relay(django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()
    assert not Delivery.objects.exists()
    assert OutboxEvent.objects.get().delivered_at is not None


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


# --- SLA alerts resolve when the clock has stopped (review r5) ---------------------------


def _ticket(**fields: Any) -> Any:
    from tickets import services as ticket_services
    from tickets.models import Customer, Ticket

    customer, _ = Customer.objects.get_or_create(email="ada@example.org", defaults={"name": "Ada"})
    ticket = ticket_services.ticket_create(customer=customer, subject="help", body="hi")
    if fields:
        Ticket.objects.filter(pk=ticket.pk).update(**fields)
        ticket.refresh_from_db()
    return ticket


def _raise(ticket: Any, event_type: str, target: str = "first_response") -> Alert:
    from django.utils import timezone

    from alerts.services import sla_event_handle

    due = getattr(ticket, f"{target}_due_at") or timezone.now()
    raised = sla_event_handle(
        event_id=OutboxEvent.objects.count() + 1000,
        event_type=event_type,
        payload={
            "ticket_id": ticket.pk,
            "ticket_ref": ticket.number,
            "target": target,
            "due_at": due.isoformat(),
        },
    )
    assert raised is not None
    return raised.alert


def _near(minutes: int) -> Any:
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(minutes=minutes)


@pytest.mark.django_db
def test_an_answered_tickets_first_response_alert_resolves_through_the_relay(
    agent, django_capture_on_commit_callbacks
):
    """The agent's reply is a ``message.created`` event: the relay batch that carries it
    resolves the alert, by the system (no actor), with the reason in its history."""
    from tickets import services as ticket_services

    ticket = _ticket(first_response_due_at=_near(20))
    alert = _raise(ticket, "sla.warning")
    other = _raise(_ticket(first_response_due_at=_near(20)), "sla.warning")
    ticket_services.message_add(ticket=ticket, body="On it", author_user=agent)
    _relay(django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    other.refresh_from_db()
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, None)
    [resolved] = [e for e in alert.history.all() if e.action == "resolved"]
    assert resolved.actor is None
    assert resolved.note.startswith("Condition cleared: first response given")
    assert other.state == AlertState.FIRING  # not answered


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_a_resolved_or_closed_tickets_breach_alerts_resolve(agent, status):
    from alerts.services import sla_alerts_resolve
    from tickets import services as ticket_services

    ticket = _ticket(first_response_due_at=_near(-5), resolution_due_at=_near(-1))
    first = _raise(ticket, "sla.breached")
    resolution = _raise(ticket, "sla.breached", target="resolution")
    assert sla_alerts_resolve(ticket_ids=[ticket.pk]) == []  # still running, still late
    ticket_services.ticket_update(ticket=ticket, actor=agent, status=status)
    assert sla_alerts_resolve(ticket_ids=[ticket.pk]) == [first.pk, resolution.pk]
    for alert in (first, resolution):
        alert.refresh_from_db()
        assert alert.state == AlertState.RESOLVED


@pytest.mark.django_db
def test_a_merged_tickets_alert_resolves_at_the_next_evaluation(supervisor):
    from django.utils import timezone

    from alerts.services import alert_rules_evaluate
    from tickets import services as ticket_services

    source = _ticket(first_response_due_at=_near(-5))
    target = _ticket()
    alert = _raise(source, "sla.breached")
    ticket_services.ticket_merge(source=source, target=target, actor=supervisor)
    report = alert_rules_evaluate(now=timezone.now())
    assert report.sla_resolved == [alert.pk]
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert "was merged" in alert.history.get(action="resolved").note


@pytest.mark.django_db
def test_a_warning_whose_due_time_moved_out_of_the_window_resolves_a_breach_does_not():
    from alerts.services import sla_alerts_resolve
    from tickets.models import Ticket

    warned = _ticket(first_response_due_at=_near(20))
    warning = _raise(warned, "sla.warning")
    late = _ticket(resolution_due_at=_near(-5))
    breach = _raise(late, "sla.breached", target="resolution")
    pending = _ticket(resolution_due_at=_near(10), status="pending")
    paused = _raise(pending, "sla.warning", target="resolution")
    assert sla_alerts_resolve() == []
    # a lower priority (or an edited policy): due in 3 hours, out of the 30-minute window
    Ticket.objects.filter(pk__in=[warned.pk, late.pk]).update(
        first_response_due_at=_near(180), resolution_due_at=_near(180)
    )
    assert sla_alerts_resolve() == [warning.pk]
    for alert in (breach, paused):  # a breach happened; a pause is not a stop
        alert.refresh_from_db()
        assert alert.state == AlertState.FIRING
