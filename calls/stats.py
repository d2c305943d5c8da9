"""Call pipeline health for the supervisor dashboard (read-only): seed 003's figures
(calls by pipeline status, failures, records waiting for a redelivery) over a window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count

from calls.models import Call, CallAnalytics, CallEvent, EventStatus, PipelineStatus


def call_pipeline_health(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Calls recorded in the window by pipeline status (every status present), the call
    records that failed to apply (the dead-letter equivalent), and analytics produced."""
    by_status = dict(
        Call.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("pipeline_status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("pipeline_status", "n")
    )
    events = dict(
        CallEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("status", "n")
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
        "events": sum(events.values()),
        "events_failed": events.get(EventStatus.FAILED, 0),
        "analytics": analytics,
    }
