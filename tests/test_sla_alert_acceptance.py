"""Issue #16's acceptance across the apps: an SLA breach on a demo ticket raises an alert
and a notification attempt through the delivery engine (recorded); acknowledging and
resolving it from the dashboard are recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client

from alerts.models import Alert, AlertState
from support.delivery.models import Attempt, Delivery
from support.models import DeliveryStatus
from support.services import outbox_relay
from tickets import demo
from tickets.models import Ticket
from tickets.services.sla import sla_check

pytestmark = pytest.mark.django_db


def test_a_demo_sla_breach_is_alerted_notified_acknowledged_and_resolved(
    monkeypatch: pytest.MonkeyPatch, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(demo, "DEMO_TICKETS", 12)
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    late = Ticket.objects.get(tags__name=demo.SLA_DEMO_TAG)
    supervisor.email = "supervisor@example.com"
    supervisor.save(update_fields=["email"])

    sla_check()
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()

    alert = Alert.objects.get(fingerprint=f"sla:{late.pk}:first_response")
    assert alert.state == AlertState.FIRING
    [delivery] = Delivery.objects.filter(subject_type="alert", subject_id=str(alert.pk))
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert Attempt.objects.filter(delivery=delivery).count() == 1
    assert "supervisor@example.com" in mail.outbox[-1].to

    client = Client()
    client.force_login(supervisor)
    widget = client.get("/dashboard/widgets/alerts/").content.decode()
    assert f'action="/alerts/{alert.pk}/acknowledge"' in widget
    with django_capture_on_commit_callbacks(execute=True):
        acknowledged = client.post(f"/alerts/{alert.pk}/acknowledge", {"next": "/dashboard/"})
    with django_capture_on_commit_callbacks(execute=True):
        resolved = client.post(f"/alerts/{alert.pk}/resolve", {"next": "/dashboard/"})

    assert (acknowledged.status_code, resolved.status_code) == (302, 302)
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by, alert.resolved_by) == (
        AlertState.RESOLVED,
        supervisor,
        supervisor,
    )
    assert [e.action for e in alert.history.all()] == ["fired", "acknowledged", "resolved"]
    assert (
        Attempt.objects.filter(
            delivery__subject_type="alert", delivery__subject_id=str(alert.pk)
        ).count()
        == 3
    )
