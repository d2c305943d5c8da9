"""Seed 003's call pipeline metrics (``calls.metrics``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.metrics import call_metrics
from calls.models import CallEvent, EventSource, EventStatus
from support.metrics import metrics_window

pytestmark = pytest.mark.django_db


def _values(name: str) -> dict[tuple[str, ...], float]:
    with metrics_window(3600):
        families = {family.name: family for family in call_metrics()}
    return {tuple(sample.labels.values()): sample.value for sample in families[name].samples}


def _event(external_id: str, status: str, age: timedelta) -> CallEvent:
    event = CallEvent.objects.create(source=EventSource.CTR, external_id=external_id, status=status)
    CallEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - age)
    return event


def test_dead_letters_are_a_level_like_the_dead_letter_queue_depth() -> None:
    """Seed 003's alarm is "SQS DLQ message count > 0": a depth, in alarm while anything
    waits in the dead-letter queue. ``support_call_events_failed`` (CallDeadLetters) is
    its equivalent, so it counts every record still failed, however long ago it came;
    before, only those received in the window (24 h), so an unhandled dead letter
    stopped counting, and its alert resolved, a day after it failed. The failure *rate*
    (``support_call_events``, CallPipelineErrorRate) stays windowed."""
    old = _event("old", EventStatus.FAILED, timedelta(days=3))
    _event("new", EventStatus.FAILED, timedelta(minutes=5))
    _event("fine", EventStatus.PROCESSED, timedelta(days=3))
    assert _values("support_call_events_failed") == {(): 2}
    assert _values("support_call_events") == {("ctr", "failed"): 1}
    # Applied on a redelivery, or deleted in the admin (the DLQ purged): no longer waiting.
    CallEvent.objects.filter(pk=old.pk).update(status=EventStatus.PROCESSED)
    assert _values("support_call_events_failed") == {(): 1}
    CallEvent.objects.filter(status=EventStatus.FAILED).delete()
    assert _values("support_call_events_failed") == {(): 0}
