"""Raw inbound events (webhook deliveries, call events) are purged after
``RAW_EVENT_RETENTION_DAYS``, in batches, by one hourly beat task; pending events and dead
letters are never purged; those a supervisor closed unprocessed are, like ignored ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from calls.models import CallEvent, EventStatus
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from support import retention
from support.celery import app
from support.tasks import raw_events_purge_task

pytestmark = pytest.mark.django_db


def _inbound(account: Any, key: str, status: str, age_days: float, processed: bool) -> int:
    event = InboundEvent.objects.create(
        channel=account.channel, account=account, external_id=key, body=b"{}", status=status
    )
    at = timezone.now() - timedelta(days=age_days)
    InboundEvent.objects.filter(pk=event.pk).update(
        received_at=at, processed_at=at if processed else None
    )
    return event.pk


def _call_event(key: str, status: str, age_days: float, processed: bool) -> int:
    event = CallEvent.objects.create(source="ctr", external_id=key, payload={}, status=status)
    at = timezone.now() - timedelta(days=age_days)
    CallEvent.objects.filter(pk=event.pk).update(
        created_at=at, processed_at=at if processed else None
    )
    return event.pk


@pytest.fixture
def events() -> dict[str, int]:
    account = make_account("whatsapp")
    return {
        # done and old: purged
        "processed_old": _inbound(account, "a", InboundStatus.PROCESSED, 31, True),
        "ignored_old": _inbound(account, "b", InboundStatus.IGNORED, 40, True),
        "malformed_old": _inbound(account, "c", InboundStatus.MALFORMED, 45, False),
        # closed unprocessed by a supervisor: purged like an ignored one, from the close
        "closed_old": _inbound(account, "h", InboundStatus.CLOSED, 31, True),
        "call_processed_old": _call_event("k1", EventStatus.PROCESSED, 31, True),
        "call_ignored_old": _call_event("k2", EventStatus.IGNORED, 60, True),
        # kept: recent, pending, dead letters
        "processed_recent": _inbound(account, "d", InboundStatus.PROCESSED, 29, True),
        "closed_recent": _inbound(account, "i", InboundStatus.CLOSED, 29, True),
        "received_old": _inbound(account, "e", InboundStatus.RECEIVED, 90, False),
        "retrying_old": _inbound(account, "f", InboundStatus.RETRYING, 90, False),
        "dead_old": _inbound(account, "g", InboundStatus.DEAD, 90, False),
        "call_received_old": _call_event("k3", EventStatus.RECEIVED, 90, False),
        "call_failed_old": _call_event("k4", EventStatus.FAILED, 90, False),
        "call_processed_recent": _call_event("k5", EventStatus.PROCESSED, 1, True),
    }


def _left(events: dict[str, int]) -> set[str]:
    """The names of the events still there."""
    inbound = set(InboundEvent.objects.values_list("id", flat=True))
    calls = set(CallEvent.objects.values_list("id", flat=True))
    return {
        name
        for name, pk in events.items()
        if pk in (calls if name.startswith("call_") else inbound)
    }


def test_purge_deletes_only_done_events_past_retention(events, caplog):
    assert settings.RAW_EVENT_RETENTION_DAYS == 30
    counts = raw_events_purge_task.delay().get()
    assert counts == {
        "calls_events": 2,
        "channels_inbound_events": 4,
        "knowledge_object_events": 0,  # knowledge/tests/test_s3_events.py
    }
    kept = {k for k in events if not k.endswith("_old") or "received" in k or "retrying" in k}
    kept |= {"dead_old", "call_failed_old"}
    assert _left(events) == kept
    assert "1 dead letter(s) older than 30 days are kept" in caplog.text
    # Idempotent: nothing more to do.
    assert raw_events_purge_task.delay().get() == {
        "calls_events": 0,
        "channels_inbound_events": 0,
        "knowledge_object_events": 0,
    }


def test_purge_works_in_batches_and_resumes(events):
    first = retention.raw_events_purge(batch=1, max_batches=2)
    assert first == {"calls_events": 2, "channels_inbound_events": 2, "knowledge_object_events": 0}
    second = retention.raw_events_purge(batch=1, max_batches=2)
    assert second == {"calls_events": 0, "channels_inbound_events": 2, "knowledge_object_events": 0}


def test_zero_days_keeps_everything(events, settings):
    settings.RAW_EVENT_RETENTION_DAYS = 0
    assert raw_events_purge_task.delay().get() == {}
    assert _left(events) == set(events)


def test_the_purge_runs_hourly_from_beat():
    entry = settings.CELERY_BEAT_SCHEDULE["raw-events-purge"]
    assert entry == {"task": "support.tasks.raw_events_purge_task", "schedule": 3600.0}
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
