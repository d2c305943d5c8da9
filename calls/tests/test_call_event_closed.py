"""A record a supervisor closed unapplied has a status of its own, ``closed``: never mixed
with ``ignored`` (a record this app has no use for), purged by the raw event retention like
a processed one, and never applied later."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from calls.models import CallEvent
from calls.retention import call_events_purge
from calls.services.intake import call_event_process

pytestmark = pytest.mark.django_db

migration = importlib.import_module("calls.migrations.0008_call_event_closed")


def _event(n: int, status: str, error: str = "", days: int = 0) -> CallEvent:
    event = CallEvent.objects.create(
        source="ctr", external_id=f"ctr-{n}", payload={}, status=status, error=error
    )
    when = timezone.now() - timedelta(days=days)
    CallEvent.objects.filter(pk=event.pk).update(created_at=when, processed_at=when)
    return event


def test_records_closed_before_are_moved_to_closed_and_back():
    closed = _event(1, "ignored", "Closed unapplied by a supervisor (sam); was: KeyError: 'x'")
    ignored = _event(2, "ignored", "")
    erased = _event(3, "ignored", "erased: personal data removed at the customer's request")
    failed = _event(4, "failed", "Closed unapplied by a supervisor (x)")  # not ignored
    migration.closed_events_restatus(apps, None)
    statuses = dict(CallEvent.objects.values_list("pk", "status"))
    assert statuses == {
        closed.pk: "closed",
        ignored.pk: "ignored",
        erased.pk: "ignored",
        failed.pk: "failed",
    }
    migration.closed_events_unstatus(apps, None)
    assert CallEvent.objects.get(pk=closed.pk).status == "ignored"


def test_closed_records_are_purged_in_time_and_never_applied(settings):
    old = _event(1, "closed", "Closed unapplied by a supervisor (sam); was: x", days=40)
    recent = _event(2, "closed", "Closed unapplied by a supervisor (sam); was: x", days=1)
    dead = _event(3, "failed", "KeyError: 'x'", days=40)
    assert call_event_process(event_id=recent.pk) == "closed"
    result = call_events_purge(timezone.now() - timedelta(days=30), batch=100, max_batches=10)
    assert result.deleted == 1
    assert result.dead_letters_kept == 1
    assert set(CallEvent.objects.values_list("pk", flat=True)) == {recent.pk, dead.pk}
    assert not CallEvent.objects.filter(pk=old.pk).exists()
