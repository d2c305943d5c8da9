"""Routing quality aggregates for the supervisor dashboard (read-only): the same
definitions as the seed 004 metrics in ``routing/metrics.py``, over a chosen window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback


def _decisions(
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None,
    channels: Iterable[str] | None,
) -> QuerySet[RoutingDecision]:
    qs = RoutingDecision.objects.filter(created_at__gte=start, created_at__lt=end)
    if team_ids:
        qs = qs.filter(ticket__team_id__in=list(team_ids))
    if channels:
        qs = qs.filter(ticket__channel__in=list(channels))
    return qs


def routing_quality(
    *,
    start: datetime,
    end: datetime,
    bucket: Literal["hour", "day"] = "day",
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Decisions made in the window: manual-review rate, accuracy from people's verdicts
    (given in the window on any decision of the filtered tickets), tokens and cost per
    routed ticket, overall and per bucket. Ratios are None without data."""
    decisions = _decisions(start, end, team_ids, channels)
    totals = decisions.aggregate(
        n=Count("pk"),
        tickets=Count("ticket_id", distinct=True),
        review=Count("pk", filter=Q(requires_manual_review=True)),
        cost=Sum("cost_usd"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
    )
    verdicts = RoutingFeedback.objects.filter(created_at__gte=start, created_at__lt=end)
    if team_ids:
        verdicts = verdicts.filter(decision__ticket__team_id__in=list(team_ids))
    if channels:
        verdicts = verdicts.filter(decision__ticket__channel__in=list(channels))
    judged = verdicts.aggregate(
        n=Count("pk"), accepted=Count("pk", filter=Q(verdict=FeedbackVerdict.ACCEPTED))
    )
    tz = timezone.get_current_timezone()
    trunc = TruncHour if bucket == "hour" else TruncDay
    per_bucket = {
        row["at"]: row
        for row in decisions.annotate(at=trunc("created_at", tzinfo=tz))
        .values("at")
        .annotate(n=Count("pk"), review=Count("pk", filter=Q(requires_manual_review=True)))
        .order_by()
    }
    verdict_bucket = {
        row["at"]: row
        for row in verdicts.annotate(at=trunc("created_at", tzinfo=tz))
        .values("at")
        .annotate(n=Count("pk"), accepted=Count("pk", filter=Q(verdict=FeedbackVerdict.ACCEPTED)))
        .order_by()
    }
    n, tickets = totals["n"], totals["tickets"]
    cost = float(totals["cost"] or 0)
    return {
        "decisions": n,
        "tickets": tickets,
        "review_rate": totals["review"] / n if n else None,
        "verdicts": judged["n"],
        "accuracy": judged["accepted"] / judged["n"] if judged["n"] else None,
        "cost_usd": cost,
        "cost_per_ticket_usd": cost / tickets if tickets else None,
        "tokens_per_ticket": (
            ((totals["tokens_in"] or 0) + (totals["tokens_out"] or 0)) / tickets
            if tickets
            else None
        ),
        "buckets": {
            at: {
                "decisions": per_bucket.get(at, {}).get("n", 0),
                "review": per_bucket.get(at, {}).get("review", 0),
                "verdicts": verdict_bucket.get(at, {}).get("n", 0),
                "accepted": verdict_bucket.get(at, {}).get("accepted", 0),
            }
            for at in sorted({*per_bucket, *verdict_bucket})
        },
    }
