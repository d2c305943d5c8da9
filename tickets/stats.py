"""Read-only aggregates of tickets for the supervisor dashboard (selectors: no writes).

Every function aggregates in SQL over a bounded window (``created_at`` / ``resolved_at``
indexes), so the cost follows the window, not the table. Merged tickets are left out:
their conversation lives on in the ticket they were merged into. The dashboard is for
supervisors, who see every ticket, so there is no per-agent visibility filter here.

A ticket **ends** when it is resolved or, never resolved, closed (an agent may close a new,
open or pending ticket straight away: only ``closed_at`` is set): its end is
``COALESCE(resolved_at, closed_at)`` (:func:`ended_in`), so a ticket closed without a
resolution counts as resolved at its close in the flow, the resolution times and the
agents' "resolved in range", as in the SLA attainment (``tickets.selectors``); a ticket
resolved and then closed counts once, at its resolution.

Time buckets (:func:`bucket_start`) are truncated in the site's time zone by PostgreSQL
(``date_trunc(unit, at, zone)``, which keeps the instant: the repeated hour of a fall-back
night is two buckets) and stepped in UTC, so a fall-back day has 25 hour buckets and a
spring-forward day 23. Each bucket's ``at`` is the local time with its UTC offset of that
moment (a fixed-offset tzinfo): two buckets labelled 02:00 stay two distinct keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count, DateTimeField, Expression, F, Func, Q, QuerySet, Value
from django.db.models.functions import Coalesce
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
#: A ticket's end in SQL: its resolution, or, never resolved, its close.
ENDED_AT = "COALESCE(resolved_at, closed_at)"


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


def ended_in(start: datetime, end: datetime) -> Q:
    """Tickets that ended in ``[start, end)``: resolved in it, or never resolved and closed
    in it (``COALESCE(resolved_at, closed_at)``, spelt out so the ``resolved_at`` index
    serves the first half)."""
    return Q(resolved_at__gte=start, resolved_at__lt=end) | Q(
        resolved_at__isnull=True, closed_at__gte=start, closed_at__lt=end
    )


def bucket_start(value: Expression | str, bucket: Bucket) -> Func:
    """The start of the site-local hour or day ``value`` falls in, as an instant:
    ``date_trunc(unit, value, zone)`` truncates in the zone and keeps the offset of the
    moment, so 02:30 CEST and 02:30 CET (a fall-back night) are two hours, not one."""
    return Func(
        Value(bucket),
        F(value) if isinstance(value, str) else value,
        Value(timezone.get_current_timezone_name()),
        function="DATE_TRUNC",
        output_field=DateTimeField(),
    )


def local_bucket(at: datetime) -> datetime:
    """``at`` in the site's time zone, with the fixed UTC offset of that moment: the two
    02:00 of a fall-back night stay distinct keys (two aware datetimes in one ``ZoneInfo``
    compare by wall time, so they would be one)."""
    offset = at.astimezone(timezone.get_current_timezone()).utcoffset()
    return at.astimezone(dt_timezone(offset or timedelta(0)))


def _buckets(start: datetime, end: datetime, bucket: Bucket) -> list[datetime]:
    """The instants (UTC) starting each site-local hour or day touching ``[start, end)``:
    hours step in UTC (a fall-back day has 25, a spring-forward day 23), days from local
    midnight to local midnight."""
    tz = timezone.get_current_timezone()
    local = start.astimezone(tz)
    out: list[datetime] = []
    if bucket == "hour":
        within = timedelta(minutes=local.minute, seconds=local.second)
        current = start.astimezone(UTC) - within - timedelta(microseconds=local.microsecond)
        while current < end:
            out.append(current)
            current += timedelta(hours=1)
        return out
    day = local.date()
    while (current := datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)) < end:
        out.append(current)
        day += timedelta(days=1)
    return out


def ticket_flow(
    *,
    start: datetime,
    end: datetime,
    bucket: Bucket = "day",
    team_ids: Iterable[int] | None = None,
    channels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Tickets created and ended (resolved, or closed without being resolved: see the
    module's docstring) per site-local hour or day in ``[start, end)``:
    ``[{at, created, resolved}]`` with every bucket present (zeros included), ``at`` the
    bucket's local start (:func:`local_bucket`)."""
    base = _scoped(Ticket.objects.all(), team_ids, channels)

    def per_bucket(qs: QuerySet[Ticket], value: Expression | str) -> dict[datetime, int]:
        rows = (
            qs.annotate(at=bucket_start(value, bucket))
            .values("at")
            .annotate(n=Count("pk"))
            .order_by()
            .values_list("at", "n")
        )
        return {at.astimezone(UTC): n for at, n in rows}

    created = per_bucket(base.filter(created_at__gte=start, created_at__lt=end), "created_at")
    resolved = per_bucket(base.filter(ended_in(start, end)), Coalesce("resolved_at", "closed_at"))
    return [
        {"at": local_bucket(at), "created": created.get(at, 0), "resolved": resolved.get(at, 0)}
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
    tickets created in the window, overall and by team. The resolution time runs to the
    ticket's end (resolved, or closed without being resolved: ``COALESCE(resolved_at,
    closed_at)``). Tickets not yet answered or ended do not count towards that figure
    (``answered`` / ``resolved`` say how many did).
    ``{"overall": {...}, "teams": [{team_id, team, ...}]}``.

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
    resolution = f"EXTRACT(EPOCH FROM {ENDED_AT} - created_at)::float8"
    sql = f"""
        SELECT GROUPING(team_id) = 1, team_id, count(*), count(first_response_at),
               count({ENDED_AT}),
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
) -> dict[str, Any]:
    """Who carries the filtered tickets: active agents and supervisors (members of
    ``team_ids`` when given) and everyone the filtered tickets are assigned to (a
    supervisor outside the team, a deactivated user), with their open assigned tickets now
    and the tickets they resolved (ended: resolved, or closed without being resolved) in
    the window; online first, then the busiest, at most ``limit`` rows.

    ``{"rows": [{user_id, name, online, open, resolved}], "people": n, "online": n,
    "open": n}``: ``people``, ``online`` and ``open`` are over everyone listed, not only
    the rows returned (``open`` is then every open filtered ticket with an assignee, as
    the backlog counts them). One query: the loads per assignee (``status`` and
    ``resolved_at`` indexes), the people, and the totals as window functions before the
    ``LIMIT``."""
    users = get_user_model()._meta
    groups = users.get_field("groups").remote_field.through._meta.db_table  # type: ignore[union-attr]
    members = Team._meta.get_field("members").remote_field.through._meta.db_table  # type: ignore[union-attr]
    scope = ["merged_into_id IS NULL", "assignee_id IS NOT NULL"]
    params: dict[str, Any] = {
        "open": [str(s) for s in OPEN_STATUSES],
        "start": start,
        "end": end,
        "groups": [AGENTS_GROUP, SUPERVISORS_GROUP],
        "online": sorted(online_ids),
        "limit": limit,
    }
    team_member = ""
    if team_ids:
        params["teams"] = list(team_ids)
        scope.append("team_id = ANY(%(teams)s)")
        team_member = (
            f"AND EXISTS (SELECT 1 FROM {members} tm"  # noqa: S608 - a constant table name
            " WHERE tm.user_id = u.id AND tm.team_id = ANY(%(teams)s))"
        )
    if channels:
        params["channels"] = list(channels)
        scope.append("channel = ANY(%(channels)s)")
    ended = (
        "((resolved_at >= %(start)s AND resolved_at < %(end)s)"
        " OR (resolved_at IS NULL AND closed_at >= %(start)s AND closed_at < %(end)s))"
    )
    sql = f"""
        WITH load AS (
            SELECT assignee_id AS user_id,
                   count(*) FILTER (WHERE status = ANY(%(open)s)) AS open,
                   count(*) FILTER (WHERE {ended}) AS resolved
            FROM {Ticket._meta.db_table}
            WHERE {" AND ".join(scope)} AND (status = ANY(%(open)s) OR {ended})
            GROUP BY assignee_id
        ), people AS (
            SELECT u.id,
                   COALESCE(NULLIF(btrim(u.first_name || ' ' || u.last_name), ''), u.username)
                       AS name,
                   u.id = ANY(%(online)s::bigint[]) AS online,
                   COALESCE(l.open, 0) AS open, COALESCE(l.resolved, 0) AS resolved
            FROM {users.db_table} u LEFT JOIN load l ON l.user_id = u.id
            WHERE u.id IN (SELECT user_id FROM load)
               OR (u.is_active {team_member} AND EXISTS (
                    SELECT 1 FROM {groups} ug JOIN {Group._meta.db_table} g ON g.id = ug.group_id
                    WHERE ug.user_id = u.id AND g.name = ANY(%(groups)s)))
        )
        SELECT id, name, online, open, resolved,
               count(*) OVER (), count(*) FILTER (WHERE online) OVER (), sum(open) OVER ()
        FROM people
        ORDER BY online DESC, open DESC, name, id
        LIMIT %(limit)s
    """  # noqa: S608 - table names and clauses are constants; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    rows = [
        {"user_id": pk, "name": name, "online": online, "open": n, "resolved": done}
        for pk, name, online, n, done, *_ in found
    ]
    people, online, assigned = found[0][5:] if found else (0, 0, 0)
    return {"rows": rows, "people": people, "online": online, "open": int(assigned or 0)}


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
