"""Routing quality aggregates for the supervisor dashboard (read-only): the same
definitions as the seed 004 metrics in ``routing/metrics.py``, over a chosen window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from django.db import connection
from django.utils import timezone

from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback
from tickets.models import Ticket


def _window_sql(
    alias: str,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None,
    channels: Iterable[str] | None,
) -> tuple[str, str, list[Any]]:
    """JOIN and WHERE clauses (and their parameters) for rows of ``alias`` created in the
    window whose ticket matches the team and channel filters."""
    joins = ""
    where = [f"{alias}.created_at >= %s", f"{alias}.created_at < %s"]
    params: list[Any] = [start, end]
    if team_ids or channels:
        joins = f"JOIN {Ticket._meta.db_table} t ON t.id = d.ticket_id"
    if team_ids:
        where.append("t.team_id = ANY(%s)")
        params.append(list(team_ids))
    if channels:
        where.append("t.channel = ANY(%s)")
        params.append(list(channels))
    return joins, " AND ".join(where), params


def routing_quality(
    *,
    start: datetime,
    end: datetime,
    bucket: Literal["hour", "day"] = "day",
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Decisions made in the window: manual-review rate, the share the trained router
    found unlike any intent it was trained on (of the decisions made by a router with an
    out-of-scope detector), accuracy from people's verdicts
    (given in the window on any decision of the filtered tickets), tokens and cost per
    routed ticket, overall and per bucket. Ratios are None without data.

    Two passes, one over the window's decisions and one over its verdicts; ``GROUPING
    SETS`` gives each bucket and the total (distinct tickets cannot be summed) together."""
    tz = timezone.get_current_timezone_name()
    decisions = RoutingDecision._meta.db_table
    verdicts = RoutingFeedback._meta.db_table
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    decision_sql = f"""
        SELECT date_trunc(%s, d.created_at AT TIME ZONE %s) AS at, count(*),
               count(DISTINCT d.ticket_id), count(*) FILTER (WHERE d.requires_manual_review),
               count(*) FILTER (WHERE d.out_of_scope),
               count(*) FILTER (WHERE d.out_of_scope IS NOT NULL),
               sum(d.cost_usd), sum(d.tokens_in + d.tokens_out)
        FROM {decisions} d {joins} WHERE {where}
        GROUP BY GROUPING SETS ((1), ())
    """  # noqa: S608 - table names and clauses are constants; values are parameters
    v_joins, v_where, v_params = _window_sql("v", start, end, team_ids, channels)
    v_joins = f"JOIN {decisions} d ON d.id = v.decision_id " + v_joins
    verdict_sql = f"""
        SELECT date_trunc(%s, v.created_at AT TIME ZONE %s) AS at, count(*),
               count(*) FILTER (WHERE v.verdict = %s)
        FROM {verdicts} v {v_joins} WHERE {v_where}
        GROUP BY GROUPING SETS ((1), ())
    """  # noqa: S608 - as above
    with connection.cursor() as cursor:
        cursor.execute(decision_sql, [bucket, tz, *params])
        decision_rows = cursor.fetchall()
        cursor.execute(verdict_sql, [bucket, tz, FeedbackVerdict.ACCEPTED, *v_params])
        verdict_rows = cursor.fetchall()
    total = (None, 0, 0, 0, 0, 0, None, None)
    per_bucket: dict[datetime, tuple[int, int, int, int]] = {}
    # The grand total is the row GROUPING SETS adds with a NULL bucket (buckets never are).
    for at, n, tickets, review, unlike, scored, cost, tokens in decision_rows:
        if at is None:
            total = (at, n, tickets, review, unlike, scored, cost, tokens)
        else:
            per_bucket[timezone.make_aware(at, timezone.get_current_timezone())] = (
                n,
                review,
                unlike,
                scored,
            )
    judged, accepted = 0, 0
    verdict_bucket: dict[datetime, tuple[int, int]] = {}
    for at, n, ok in verdict_rows:
        if at is None:
            judged, accepted = n, ok
        else:
            verdict_bucket[timezone.make_aware(at, timezone.get_current_timezone())] = (n, ok)
    _, n, tickets, review, unlike, scored, cost_sum, tokens = total
    cost = float(cost_sum or 0)

    def counts(at: datetime) -> dict[str, int]:
        made, reviewed, found, detected = per_bucket.get(at, (0, 0, 0, 0))
        judged_in, accepted_in = verdict_bucket.get(at, (0, 0))
        return {
            "decisions": made,
            "review": reviewed,
            "out_of_scope": found,
            "scored": detected,
            "verdicts": judged_in,
            "accepted": accepted_in,
        }

    return {
        "decisions": n,
        "tickets": tickets,
        "review_rate": review / n if n else None,
        # of the decisions whose router has an out-of-scope detector
        "scored_decisions": scored,
        "out_of_scope_rate": unlike / scored if scored else None,
        "verdicts": judged,
        "accuracy": accepted / judged if judged else None,
        "cost_usd": cost,
        "cost_per_ticket_usd": cost / tickets if tickets else None,
        "tokens_per_ticket": (tokens or 0) / tickets if tickets else None,
        "buckets": {at: counts(at) for at in sorted({*per_bucket, *verdict_bucket})},
    }
