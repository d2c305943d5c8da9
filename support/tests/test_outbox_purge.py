"""The hourly outbox purge (``support.services.outbox_purge``): events delivered before the
cutoff go, in batches, found through the ``created_at`` index; events not delivered stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from support.models import OutboxEvent
from support.services import outbox_purge

pytestmark = pytest.mark.django_db


def _event(*, age_days: float, delivered: bool = True, failed: bool = False) -> OutboxEvent:
    event = OutboxEvent.objects.create(
        event_type="message.created", aggregate_type="ticket", aggregate_id="1", payload={}
    )
    at = timezone.now() - timedelta(days=age_days)
    OutboxEvent.objects.filter(pk=event.pk).update(
        created_at=at,
        delivered_at=at + timedelta(seconds=1) if delivered else None,
        failed_at=at + timedelta(seconds=1) if failed else None,
    )
    return event


def test_only_events_delivered_before_the_cutoff_go() -> None:
    old = [_event(age_days=20) for _ in range(3)]
    kept = [
        _event(age_days=1),  # delivered, recent
        _event(age_days=20, delivered=False),  # pending for 20 days
        _event(age_days=20, delivered=False, failed=True),  # a dead letter to re-drive
    ]
    assert outbox_purge(older_than_days=14) == len(old)
    assert sorted(OutboxEvent.objects.values_list("pk", flat=True)) == [e.pk for e in kept]
    assert outbox_purge(older_than_days=14) == 0


def test_a_backlog_goes_in_bounded_batches_over_several_runs() -> None:
    for _ in range(5):
        _event(age_days=20)
    with CaptureQueriesContext(connection) as captured:
        assert outbox_purge(older_than_days=14, batch=2, max_batches=2) == 4
    deletes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 2  # one statement per batch, in its own transaction
    assert OutboxEvent.objects.count() == 1
    assert outbox_purge(older_than_days=14, batch=2, max_batches=2) == 1
    assert not OutboxEvent.objects.exists()


def test_the_events_to_delete_are_found_through_the_created_at_index() -> None:
    """``delivered_at`` has no index: a condition on it alone read every event kept
    (OUTBOX_RETENTION_DAYS of them) on each run. An hourly run finds the hour or so of
    events past the cutoff among the whole retention window's."""
    for days in reversed(range(30)):  # oldest first, as they come
        for _ in range(40):
            _event(age_days=days + 0.5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE support_outboxevent")
    with CaptureQueriesContext(connection) as captured:
        assert outbox_purge(older_than_days=29) == 40
    (first,) = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("SELECT") and "LIMIT" in q["sql"]
    ][:1]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {first}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Cond: (created_at <" in plan, plan
