"""Webhook intake metrics (``channels_app.metrics``) that alert rules read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertState
from alerts.services import rule_evaluate
from channels_app.metrics import intake_metrics
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from support.metrics import metrics_window

pytestmark = pytest.mark.django_db

DEAD = "support_inbound_dead_letters"


def _families(window_seconds: float) -> list[Any]:
    with metrics_window(window_seconds):
        return list(intake_metrics())


def _values(name: str, window_seconds: float = 600) -> dict[tuple[str, ...], float]:
    (family,) = [f for f in _families(window_seconds) if f.name == name]
    return {tuple(sample.labels.values()): sample.value for sample in family.samples}


def _event(account: Any, external_id: str, status: str, age: timedelta) -> InboundEvent:
    event = InboundEvent.objects.create(
        channel=account.channel, account=account, external_id=external_id, body=b"{}", status=status
    )
    InboundEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - age)
    return event


def test_inbound_dead_letters_are_a_level_an_alert_stays_open_on() -> None:
    """``support_webhook_events{outcome="dead"}`` counts events *received* in the window:
    a rule over it (docs/alerts.md recommended one) fired, then resolved once the event's
    received_at left its window, with the event still dead and nobody told. The call
    events' dead letters had the same bug (fixed 2026-12-05, ``support_call_events_failed``).
    ``support_inbound_dead_letters{channel,status}`` counts every event dead or
    quarantined now, however long ago it came, until it is re-processed, released or
    closed."""
    whatsapp, email = make_account("whatsapp"), make_account("email")
    dead = _event(whatsapp, "w-dead", InboundStatus.DEAD, timedelta(minutes=5))
    _event(whatsapp, "w-dead-old", InboundStatus.DEAD, timedelta(days=3))
    held = _event(email, "e-held", InboundStatus.QUARANTINED, timedelta(days=40))
    _event(whatsapp, "w-fine", InboundStatus.PROCESSED, timedelta(minutes=5))
    _event(email, "e-closed", InboundStatus.CLOSED, timedelta(days=3))
    rule = AlertRule.objects.create(
        name="InboundDeadLetters", metric=DEAD, window_seconds=600, threshold=0, severity="warning"
    )
    windowed = AlertRule.objects.create(
        name="InboundDeadInTheWindow",
        metric='support_webhook_events{outcome="dead"}',
        window_seconds=600,
        threshold=0,
        severity="warning",
    )
    assert _values(DEAD) == {("whatsapp", "dead"): 2, ("email", "quarantined"): 1}
    assert rule_evaluate(rule, _families(600), now=timezone.now()) == "fired"
    assert rule_evaluate(windowed, _families(600), now=timezone.now()) == "fired"

    # Ten minutes on, the new dead letter has left the window; the window's count drops.
    InboundEvent.objects.filter(pk=dead.pk).update(
        received_at=timezone.now() - timedelta(minutes=11)
    )
    assert ("whatsapp", "dead") not in _values("support_webhook_events")
    assert _values(DEAD) == {("whatsapp", "dead"): 2, ("email", "quarantined"): 1}
    assert rule_evaluate(windowed, _families(600), now=timezone.now()) == "resolved"  # the bug
    assert rule_evaluate(rule, _families(600), now=timezone.now()) == ""
    alert = Alert.objects.get(rule=rule)
    assert alert.state == AlertState.FIRING  # still open: the events are still dead

    # Re-processed / closed by a supervisor: no longer waiting, the alert resolves.
    InboundEvent.objects.filter(status=InboundStatus.DEAD).update(status=InboundStatus.PROCESSED)
    assert _values(DEAD) == {("email", "quarantined"): 1}
    InboundEvent.objects.filter(pk=held.pk).update(status=InboundStatus.CLOSED)
    assert _values(DEAD) == {}
    assert rule_evaluate(rule, _families(600), now=timezone.now()) == "resolved"


def test_alert_rules_may_name_the_inbound_dead_letters() -> None:
    """The admin form refuses a rule naming a metric no source exports; the family is
    exported (without samples) before anything is dead."""
    from alerts.selectors import metric_names_known

    assert DEAD in metric_names_known()
    assert _values(DEAD) == {}


def test_the_inbound_dead_letters_read_the_status_index(settings: Any) -> None:
    """Not a scan of every delivery ever received (kept RAW_EVENT_RETENTION_DAYS): an
    index scan of ``inbound_status_idx`` (status, received_at) for the few dead ones."""
    from django.db import connection

    account = make_account("whatsapp")
    InboundEvent.objects.bulk_create(
        InboundEvent(
            channel="whatsapp", account=account, external_id=f"ok-{i}", body=b"", status="processed"
        )
        for i in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_app_inboundevent")
        # Whether the planner can use the index for this shape (on a near-empty test
        # table its choice goes either way from run to run).
        cursor.execute("SET LOCAL enable_seqscan = off")
    query = (
        InboundEvent.objects.filter(status__in=[InboundStatus.DEAD, InboundStatus.QUARANTINED])
        .values("channel", "status")
        .order_by()
    )
    assert "inbound_status_idx" in query.explain()
