"""The call metrics (``calls.metrics``: every /metrics scrape, every alarm evaluation) read
indexes, not every call kept: ``call_created_idx`` for the calls recorded in the window,
``call_failed_idx`` for the failed calls by when they failed.

Plans, not timings: the statements ``call_metrics`` runs are captured and explained with
``enable_seqscan`` off (the plan shows whether an index can serve them)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from calls.metrics import call_metrics
from calls.models import Call, PipelineStatus
from calls.transcription import BDA_FAILURE
from support.metrics import metrics_window

pytestmark = pytest.mark.django_db


def _calls_statements() -> list[str]:
    """The statements on calls_call that one reading of the source runs, explained."""
    for i in range(200):
        call = Call.objects.create(contact_id=f"c-{i}", pipeline_status=PipelineStatus.SYNCED)
        Call.objects.filter(pk=call.pk).update(
            created_at=timezone.now() - timedelta(hours=i),
            updated_at=timezone.now() - timedelta(hours=i),
        )
    Call.objects.create(
        contact_id="failed",
        pipeline_status=PipelineStatus.FAILED,
        pipeline_error=f"{BDA_FAILURE}: ServiceError",
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE calls_call")
    with CaptureQueriesContext(connection) as captured, metrics_window(300):
        families = list(call_metrics())
    assert families
    statements = [q["sql"] for q in captured.captured_queries if 'FROM "calls_call"' in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return statements


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_calls_of_the_window_are_counted_through_the_created_at_index() -> None:
    (by_status,) = [
        sql for sql in _calls_statements() if "GROUP BY" in sql and '"created_at" >=' in sql
    ]
    plan = _plan(by_status)
    assert "call_created_idx" in plan, plan


def test_the_data_automation_failures_are_counted_through_the_failed_calls_index() -> None:
    (failed,) = [sql for sql in _calls_statements() if "LIKE" in sql]
    plan = _plan(failed)
    assert "call_failed_idx" in plan, plan
