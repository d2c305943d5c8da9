"""Read-only aggregates of tickets for the supervisor dashboard (selectors: no writes).

Every function aggregates in SQL over a bounded window (``created_at`` / ``resolved_at``
indexes), so the cost follows the window, not the table. Merged tickets are left out:
their conversation lives on in the ticket they were merged into. The dashboard is for
supervisors, who see every ticket, so there is no per-agent visibility filter here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from tickets.models import (
    Attachment,
    Channel,
    DeliveryState,
    Direction,
    DownloadStatus,
    Message,
    MessageKind,
    Team,
    Ticket,
    TicketStatus,
)

OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
Bucket = Literal["hour", "day"]


def _scoped(
    qs: QuerySet[Ticket], team_ids: Iterable[int] | None, channels: Iterable[str] | None
) -> QuerySet[Ticket]:
    qs = qs.filter(merged_into__isnull=True)
    if team_ids:
        qs = qs.filter(team_id__in=list(team_ids))
    if channels:
        qs = qs.filter(channel__in=list(channels))
    return qs


def team_names() -> dict[int, str]:
    return dict(Team.objects.values_list("id", "name"))


def ticket_backlog(
    *, team_ids: Iterable[int] | None = None, channels: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Open tickets now (new, open, pending) by team: ``[{team_id, team, new, open,
    pending, total}]``, biggest first; tickets without a team come as ``team_id`` None."""
    qs = _scoped(Ticket.objects.filter(status__in=OPEN_STATUSES), team_ids, channels)
    rows = (
        qs.values("team_id")
        .annotate(**{s.value: Count("pk", filter=Q(status=s)) for s in OPEN_STATUSES})
        .order_by()
    )
    names = team_names()
    out = [
        {
            "team_id": row["team_id"],
            "team": names.get(row["team_id"], "No team") if row["team_id"] else "No team",
            **{s.value: row[s.value] for s in OPEN_STATUSES},
            "total": sum(row[s.value] for s in OPEN_STATUSES),
        }
        for row in rows
    ]
    return sorted(out, key=lambda r: (-r["total"], r["team"]))


def _buckets(start: datetime, end: datetime, bucket: Bucket) -> list[datetime]:
    tz = timezone.get_current_timezone()
    local = start.astimezone(tz)
    if bucket == "hour":
        first = local.replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=1)
    else:
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
        step = timedelta(days=1)
    out = []
    current = first
    while current < end:
        out.append(current)
        current = (current + step).astimezone(tz)
        if bucket == "day":  # a DST change must not drift the day's start
            current = current.replace(hour=0, minute=0, second=0, microsecond=0)
    return out


def ticket_flow(
    *,
    start: datetime,
    end: datetime,
    bucket: Bucket = "day",
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Tickets created and resolved per hour or day in ``[start, end)``:
    ``[{at, created, resolved}]`` with every bucket present (zeros included)."""
    tz = timezone.get_current_timezone()
    trunc = TruncHour if bucket == "hour" else TruncDay
    base = _scoped(Ticket.objects.all(), team_ids, channels)
    created = dict(
        base.filter(created_at__gte=start, created_at__lt=end)
        .annotate(at=trunc("created_at", tzinfo=tz))
        .values("at")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("at", "n")
    )
    resolved = dict(
        base.filter(resolved_at__gte=start, resolved_at__lt=end)
        .annotate(at=trunc("resolved_at", tzinfo=tz))
        .values("at")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("at", "n")
    )
    return [
        {"at": at, "created": created.get(at, 0), "resolved": resolved.get(at, 0)}
        for at in _buckets(start, end, bucket)
    ]


def ticket_volume_by_channel(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Tickets created in the window by channel, ``[{channel, label, tickets, open}]``,
    biggest first (channels with none are left out)."""
    qs = _scoped(
        Ticket.objects.filter(created_at__gte=start, created_at__lt=end), team_ids, channels
    )
    rows = (
        qs.values("channel")
        .annotate(tickets=Count("pk"), open=Count("pk", filter=Q(status__in=OPEN_STATUSES)))
        .order_by()
    )
    labels = dict(Channel.choices)
    out = [
        {
            "channel": row["channel"],
            "label": labels.get(row["channel"], row["channel"]),
            "tickets": row["tickets"],
            "open": row["open"],
        }
        for row in rows
    ]
    return sorted(out, key=lambda r: (-r["tickets"], r["label"]))


RESPONSE_FIGURES = (
    "tickets",
    "answered",
    "resolved",
    "first_response_p50",
    "first_response_p90",
    "resolution_p50",
    "resolution_p90",
)


def ticket_response_times(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Median and 90th percentile of first response and resolution times (seconds) of the
    tickets created in the window, overall and by team. Tickets not yet answered or
    resolved do not count towards that figure (``answered`` / ``resolved`` say how many
    did). ``{"overall": {...}, "teams": [{team_id, team, ...}]}``.

    One pass over the window's tickets: ``GROUPING SETS`` gives the per-team rows and the
    overall row together (percentiles cannot be merged from the teams' figures)."""
    table = Ticket._meta.db_table
    where = ["merged_into_id IS NULL", "created_at >= %s", "created_at < %s"]
    params: list[Any] = [start, end]
    if team_ids:
        where.append("team_id = ANY(%s)")
        params.append(list(team_ids))
    if channels:
        where.append("channel = ANY(%s)")
        params.append(list(channels))
    first = "EXTRACT(EPOCH FROM first_response_at - created_at)::float8"
    resolution = "EXTRACT(EPOCH FROM resolved_at - created_at)::float8"
    sql = f"""
        SELECT GROUPING(team_id) = 1, team_id, count(*), count(first_response_at),
               count(resolved_at),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {first}),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY {first}),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {resolution}),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY {resolution})
        FROM {table} WHERE {" AND ".join(where)}
        GROUP BY GROUPING SETS ((team_id), ())
    """  # noqa: S608 - table name and clauses are constants; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    overall: dict[str, Any] = dict.fromkeys(RESPONSE_FIGURES)
    overall.update(tickets=0, answered=0, resolved=0)
    names = team_names()
    teams = []
    for is_total, team_id, *figures in rows:
        values = dict(zip(RESPONSE_FIGURES, figures, strict=True))
        if is_total:
            overall = values
        else:
            team = names.get(team_id, "No team") if team_id else "No team"
            teams.append({"team_id": team_id, "team": team, **values})
    teams.sort(key=lambda r: (-r["tickets"], r["team"]))
    return {"overall": overall, "teams": teams}


def agent_load(
    *,
    start: datetime,
    end: datetime,
    online_ids: set[int],
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
    limit: int = 30,
) -> list[dict[str, Any]]:
    """Active agents and supervisors (members of ``team_ids`` when given) with their open
    assigned tickets now and the tickets they resolved in the window; online first, then
    the busiest: ``[{user_id, name, online, open, resolved}]``."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=[AGENTS_GROUP, SUPERVISORS_GROUP])
        .distinct()
    )
    if team_ids:
        users = users.filter(teams__id__in=list(team_ids))
    people = list(users.values_list("id", "username", "first_name", "last_name"))
    ids = [p[0] for p in people]
    scoped = _scoped(Ticket.objects.filter(assignee_id__in=ids), team_ids, channels)
    loads = dict(
        scoped.filter(status__in=OPEN_STATUSES)
        .values("assignee_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("assignee_id", "n")
    )
    resolved = dict(
        scoped.filter(resolved_at__gte=start, resolved_at__lt=end)
        .values("assignee_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("assignee_id", "n")
    )
    out = [
        {
            "user_id": pk,
            "name": f"{first} {last}".strip() or username,
            "online": pk in online_ids,
            "open": loads.get(pk, 0),
            "resolved": resolved.get(pk, 0),
        }
        for pk, username, first, last in people
    ]
    out.sort(key=lambda r: (not r["online"], -r["open"], r["name"]))
    return out[:limit]


def reply_failures_by_channel(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, int]:
    """Replies (public, outbound) whose delivery failed in the window (``failed_at``), by
    channel: ``{channel: n}``. The team is the ticket's. Counts only: no text, no address.
    One aggregate over the partial index ``message_reply_failed_idx``."""
    qs = Message.objects.filter(
        direction=Direction.OUTBOUND,
        kind=MessageKind.PUBLIC,
        delivery_status=DeliveryState.FAILED,
        failed_at__gte=start,
        failed_at__lt=end,
    )
    if team_ids:
        qs = qs.filter(ticket__team_id__in=list(team_ids))
    if channels:
        qs = qs.filter(channel__in=list(channels))
    rows = qs.values("channel").annotate(n=Count("pk")).order_by().values_list("channel", "n")
    return dict(rows)


def attachment_downloads_by_channel(
    *,
    start: datetime,
    end: datetime,
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Channels' files not (yet) downloaded, by the channel of their message:
    ``{channel: {"failed": n, "pending": n}}``. ``failed``: attachments received in the
    window (``created_at``; an attachment records no time of failure, and a download
    fails within minutes of its arrival) that could not be downloaded; ``pending``: every
    download still to come, now, whatever the window. The team is the message's ticket's.
    One aggregate over the partial indexes ``attachment_failed_idx`` and
    ``attachment_pending_idx`` (a bitmap OR of the two)."""
    failed = Q(download_status=DownloadStatus.FAILED, created_at__gte=start, created_at__lt=end)
    pending = Q(download_status=DownloadStatus.PENDING)
    qs = Attachment.objects.filter(failed | pending)
    if team_ids:
        qs = qs.filter(message__ticket__team_id__in=list(team_ids))
    if channels:
        qs = qs.filter(message__channel__in=list(channels))
    rows = (
        qs.values("message__channel")
        .annotate(failed=Count("pk", filter=failed), pending=Count("pk", filter=pending))
        .order_by()
    )
    return {
        row["message__channel"]: {"failed": row["failed"], "pending": row["pending"]}
        for row in rows
    }
