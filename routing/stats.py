"""Routing quality aggregates for the supervisor dashboard (read-only): the same
definitions as the seed 004 metrics in ``routing/metrics.py``, over a chosen window.

Decisions on merged tickets are left out, as everywhere on the dashboard (their
conversation lives on in the ticket they were merged into). Time buckets are truncated in
the site's time zone by PostgreSQL (``date_trunc(unit, at, zone)``, which keeps the
instant: the repeated hour of a fall-back night is two buckets), keyed by their local
start with the UTC offset of that moment (``tickets.stats.local_bucket``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback
from tickets.models import Priority, Team, Ticket
from tickets.stats import local_bucket


def _window_sql(
    alias: str,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None,
    channels: Iterable[str] | None,
) -> tuple[str, str, list[Any]]:
    """JOIN and WHERE clauses (and their parameters) for rows of ``alias`` created in the
    window whose ticket (``d.ticket_id``: the decision's) is not merged and matches the
    team and channel filters. Without a filter no join: the few merged tickets (index on
    ``merged_into_id``) are left out by an anti-join."""
    table = Ticket._meta.db_table
    joins = ""
    where = [f"{alias}.created_at >= %s", f"{alias}.created_at < %s"]
    params: list[Any] = [start, end]
    if team_ids or channels:
        joins = f"JOIN {table} t ON t.id = d.ticket_id"
        where.append("t.merged_into_id IS NULL")
    else:
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {table} m"  # noqa: S608 - a constant table name
            " WHERE m.id = d.ticket_id AND m.merged_into_id IS NOT NULL)"
        )
    if team_ids:
        where.append("t.team_id = ANY(%s)")
        params.append(list(team_ids))
    if channels:
        where.append("t.channel = ANY(%s)")
        params.append(list(channels))
    return joins, " AND ".join(where), params


def _aware(at: datetime) -> datetime:
    """A bucket from ``date_trunc(unit, at, site zone)`` (an instant) as its local start
    with the UTC offset of that moment."""
    return local_bucket(at)


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
    out-of-scope detector), the provider error rate (decisions whose provider failed and
    fell back to the local router: ``fallback_from`` set), accuracy from people's verdicts
    (given in the window on any decision of the filtered tickets; each decision judged by
    its latest verdict only, so a verdict replaced later no longer counts, in its bucket
    or the total), tokens and cost per
    routed ticket, overall and per bucket. Ratios are None without data.

    Two passes, one over the window's decisions and one over its verdicts; ``GROUPING
    SETS`` gives each bucket and the total (distinct tickets cannot be summed) together."""
    tz = timezone.get_current_timezone_name()
    decisions = RoutingDecision._meta.db_table
    verdicts = RoutingFeedback._meta.db_table
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    decision_sql = f"""
        SELECT date_trunc(%s, d.created_at, %s) AS at, count(*),
               count(DISTINCT d.ticket_id), count(*) FILTER (WHERE d.requires_manual_review),
               count(*) FILTER (WHERE d.out_of_scope),
               count(*) FILTER (WHERE d.out_of_scope IS NOT NULL),
               sum(d.cost_usd), sum(d.tokens_in + d.tokens_out),
               count(*) FILTER (WHERE d.fallback_from <> '')
        FROM {decisions} d {joins} WHERE {where}
        GROUP BY GROUPING SETS ((1), ())
    """  # noqa: S608 - table names and clauses are constants; values are parameters
    v_joins, v_where, v_params = _window_sql("v", start, end, team_ids, channels)
    v_joins = f"JOIN {decisions} d ON d.id = v.decision_id " + v_joins
    verdict_sql = f"""
        SELECT date_trunc(%s, v.created_at, %s) AS at, count(*),
               count(*) FILTER (WHERE v.verdict = %s)
        FROM {verdicts} v {v_joins} WHERE {v_where}
          AND NOT EXISTS (
            SELECT 1 FROM {verdicts} later
            WHERE later.decision_id = v.decision_id AND later.id > v.id
          )
        GROUP BY GROUPING SETS ((1), ())
    """  # noqa: S608 - as above
    with connection.cursor() as cursor:
        cursor.execute(decision_sql, [bucket, tz, *params])
        decision_rows = cursor.fetchall()
        cursor.execute(verdict_sql, [bucket, tz, FeedbackVerdict.ACCEPTED, *v_params])
        verdict_rows = cursor.fetchall()
    total = (None, 0, 0, 0, 0, 0, None, None, 0)
    per_bucket: dict[datetime, tuple[int, int, int, int, int]] = {}
    # The grand total is the row GROUPING SETS adds with a NULL bucket (buckets never are).
    for at, n, tickets, review, unlike, scored, cost, tokens, errors in decision_rows:
        if at is None:
            total = (at, n, tickets, review, unlike, scored, cost, tokens, errors)
        else:
            per_bucket[_aware(at)] = (n, review, unlike, scored, errors)
    judged, accepted = 0, 0
    verdict_bucket: dict[datetime, tuple[int, int]] = {}
    for at, n, ok in verdict_rows:
        if at is None:
            judged, accepted = n, ok
        else:
            verdict_bucket[_aware(at)] = (n, ok)
    _, n, tickets, review, unlike, scored, cost_sum, tokens, errors = total
    cost = float(cost_sum or 0)

    def counts(at: datetime) -> dict[str, int]:
        made, reviewed, found, detected, failed = per_bucket.get(at, (0, 0, 0, 0, 0))
        judged_in, accepted_in = verdict_bucket.get(at, (0, 0))
        return {
            "decisions": made,
            "review": reviewed,
            "out_of_scope": found,
            "scored": detected,
            "provider_errors": failed,
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
        "provider_errors": errors,
        "provider_error_rate": errors / n if n else None,
        "verdicts": judged,
        "accuracy": accepted / judged if judged else None,
        "cost_usd": cost,
        "cost_per_ticket_usd": cost / tickets if tickets else None,
        "tokens_per_ticket": (tokens or 0) / tickets if tickets else None,
        "buckets": {at: counts(at) for at in sorted({*per_bucket, *verdict_bucket})},
    }


def routing_demo_decisions(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> int:
    """How many of the window's decisions (of the filtered tickets) the demo loader made
    up (``RoutingDecision.demo``): the routing widgets say so beside figures they feed."""
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    sql = f"""
        SELECT count(*) FROM {RoutingDecision._meta.db_table} d {joins}
        WHERE {where} AND d.demo
    """  # noqa: S608 - table names and clauses are constants; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (count,) = cursor.fetchone() or (0,)
    return int(count)


def routing_processing_times(
    *,
    start: datetime,
    end: datetime,
    bucket: Literal["hour", "day"] = "day",
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """How long the router took per decision (``processing_ms``, the provider call and
    its tools, seed 004's ProcessingTime): average and p95 (``percentile_cont``) overall
    and per bucket, and the processing rate (decisions per hour of the window up to now).
    One pass; figures are None without decisions."""
    tz = timezone.get_current_timezone_name()
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    sql = f"""
        SELECT date_trunc(%s, d.created_at, %s) AS at, count(*),
               avg(d.processing_ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY d.processing_ms)
        FROM {RoutingDecision._meta.db_table} d {joins} WHERE {where}
        GROUP BY GROUPING SETS ((1), ())
    """  # noqa: S608 - table names and clauses are constants; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [bucket, tz, *params])
        rows = cursor.fetchall()
    n, average, p95 = 0, None, None
    buckets: dict[datetime, dict[str, Any]] = {}
    for at, made, avg_ms, p95_ms in rows:
        if at is None:
            n, average, p95 = made, avg_ms, p95_ms
        else:
            buckets[_aware(at)] = {
                "decisions": made,
                "average_ms": float(avg_ms),
                "p95_ms": float(p95_ms),
            }
    elapsed = (min(end, now or timezone.now()) - start).total_seconds() / 3600
    return {
        "decisions": n,
        "average_ms": float(average) if average is not None else None,
        "p95_ms": float(p95) if p95 is not None else None,
        "per_hour": n / elapsed if n and elapsed > 0 else None,
        "buckets": dict(sorted(buckets.items())),
    }


def routing_confidence_histogram(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
    bins: int = 10,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Decision confidence over the window in ``bins`` equal bins of [0, 1] (the last one
    closed; out-of-range values clamp to the ends), each with how many fell below the
    review threshold (``ROUTING_REVIEW_THRESHOLD`` unless given: below it a decision goes
    to manual review). Every bin is listed, empty ones with 0; no bins without decisions."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    threshold = settings.ROUTING_REVIEW_THRESHOLD if threshold is None else threshold
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    sql = f"""
        SELECT LEAST(GREATEST(width_bucket(d.confidence, 0, 1, %s), 1), %s) AS bin, count(*),
               count(*) FILTER (WHERE d.confidence < %s), sum(d.confidence)
        FROM {RoutingDecision._meta.db_table} d {joins} WHERE {where}
        GROUP BY 1
    """  # noqa: S608 - as above
    with connection.cursor() as cursor:
        cursor.execute(sql, [bins, bins, threshold, *params])
        found = {b: (made, below, total) for b, made, below, total in cursor.fetchall()}
    n = sum(made for made, _, _ in found.values())
    below = sum(low for _, low, _ in found.values())
    confidence_sum = sum(float(total) for _, _, total in found.values())
    return {
        "decisions": n,
        "below_threshold": below,
        "threshold": threshold,
        "average": confidence_sum / n if n else None,
        "bins": [
            {
                "low": round((b - 1) / bins, 4),
                "high": round(b / bins, 4),
                "decisions": found.get(b, (0, 0, 0))[0],
                "below_threshold": found.get(b, (0, 0, 0))[1],
            }
            for b in range(1, bins + 1)
        ]
        if n
        else [],
    }


def routing_decisions_by_team(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Decisions in the window by the team the router chose (its name; the slug when the
    team is unknown here; None when it chose none), most first. The team and channel
    filters select tickets, as everywhere on the dashboard."""
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    sql = f"""
        SELECT COALESCE(tm.name, NULLIF(d.team_slug, '')) AS team, count(*),
               count(*) FILTER (WHERE d.requires_manual_review)
        FROM {RoutingDecision._meta.db_table} d
        LEFT JOIN {Team._meta.db_table} tm ON tm.id = d.team_id {joins}
        WHERE {where}
        GROUP BY 1 ORDER BY 2 DESC, 1
    """  # noqa: S608 - as above
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [{"team": team, "decisions": n, "review": review} for team, n, review in rows]


def routing_decisions_by_priority(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Decisions in the window by the priority the router chose, low to urgent, every
    priority listed (0 when none); nothing without decisions."""
    joins, where, params = _window_sql("d", start, end, team_ids, channels)
    sql = f"""
        SELECT d.priority, count(*), count(*) FILTER (WHERE d.requires_manual_review)
        FROM {RoutingDecision._meta.db_table} d {joins} WHERE {where}
        GROUP BY 1
    """  # noqa: S608 - as above
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {priority: (n, review) for priority, n, review in cursor.fetchall()}
    if not found:
        return []
    known = [p.value for p in Priority]
    order = known + sorted(p for p in found if p not in known)
    return [
        {
            "priority": p,
            "label": Priority(p).label if p in known else p,
            "decisions": found.get(p, (0, 0))[0],
            "review": found.get(p, (0, 0))[1],
        }
        for p in order
    ]
