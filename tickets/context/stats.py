"""CSAT aggregates for the supervisor dashboard (read-only)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Avg, Count

from tickets.context.models import CsatFeedback


def csat_summary(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Answers given in the window (by ``updated_at``: the last answer counts) about the
    filtered tickets: ``{responses, average, satisfied_ratio, ratings: {1..5: n}}``;
    satisfied means a rating of 4 or 5 (the usual CSAT score). Answers on merged tickets
    are left out (a closed duplicate; new answers on them are refused)."""
    qs = CsatFeedback.objects.filter(
        updated_at__gte=start, updated_at__lt=end, ticket__merged_into__isnull=True
    )
    if team_ids:
        qs = qs.filter(ticket__team_id__in=list(team_ids))
    if channels:
        qs = qs.filter(ticket__channel__in=list(channels))
    counts = dict(qs.values("rating").annotate(n=Count("pk")).order_by().values_list("rating", "n"))
    average = qs.aggregate(avg=Avg("rating"))["avg"]
    responses = sum(counts.values())
    satisfied = counts.get(4, 0) + counts.get(5, 0)
    return {
        "responses": responses,
        "average": float(average) if average is not None else None,
        "satisfied_ratio": satisfied / responses if responses else None,
        "ratings": {r: counts.get(r, 0) for r in range(1, 6)},
    }
