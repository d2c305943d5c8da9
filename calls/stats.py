"""Call pipeline health for the supervisor dashboard (read-only): seed 003's figures
(calls by pipeline status, failures, analyses) over a window, and the records waiting for
a redelivery now (a level, like the ``support_call_events_failed`` gauge)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from calls.models import Call, CallAnalytics, CallEvent, EventStatus, PipelineStatus


def call_pipeline_health(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Calls recorded in the window by pipeline status (every status present), the call
    records received in the window (``events``), the analytics produced in it, and
    ``events_failed``: every call record that failed to apply and still waits for a
    redelivery or a person **now**, however old (the dead-letter queue's depth, as
    ``calls.metrics`` reports it; partial index ``callevent_failed_idx``), whatever the
    window."""
    by_status = dict(
        Call.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("pipeline_status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("pipeline_status", "n")
    )
    # One aggregate: a bitmap OR of the created_at index and the partial failed index.
    in_window = Q(created_at__gte=start, created_at__lt=end)
    failed_now = Q(status=EventStatus.FAILED)
    events = CallEvent.objects.filter(in_window | failed_now).aggregate(
        received=Count("pk", filter=in_window), failed=Count("pk", filter=failed_now)
    )
    analytics = CallAnalytics.objects.filter(created_at__gte=start, created_at__lt=end).count()
    calls = sum(by_status.values())
    return {
        "calls": calls,
        "by_status": [
            {"status": s.value, "label": s.label, "calls": by_status.get(s.value, 0)}
            for s in PipelineStatus
        ],
        "failed_ratio": by_status.get(PipelineStatus.FAILED, 0) / calls if calls else None,
        "events": events["received"],
        "events_failed": events["failed"],
        "analytics": analytics,
    }
