"""SLA arithmetic: business time over a calendar, and which policy applies to a ticket.

Pure functions over small frozen snapshots (``CalendarSpec``, ``PolicySpec``), so the
hottest write (``ticket_create``) computes due times without a query: the active
policies are cached per process for ``SLA_POLICY_CACHE_SECONDS`` (saving a policy,
calendar, hours or holiday forgets this process's copy at once). See docs/sla.md.

Business time is real elapsed time inside open intervals: an interval that spans a DST
change is one hour shorter or longer, as the clock on the wall says.
"""

from __future__ import annotations

import threading
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from django.conf import settings

# A calendar with open hours has one open interval within at most a year and a bit
# (holidays aside); this bounds the walk for a calendar whose open days are all
# holidays from some date on: that many closed days in a row and it never opens again.
MAX_DAYS = 800
#: A due time further than this from its start is none (the walk is one step per day:
#: a target of millions of minutes must not keep a worker busy).
HORIZON_DAYS = 3660
#: ``closes_at`` 23:59:59 (the latest a TimeField takes) means midnight: the day is open
#: to its end, so a night shift split over two days has no one-second hole.
END_OF_DAY = dtime(23, 59, 59)
UTC = zoneinfo.ZoneInfo("UTC")


def merge_hours(
    intervals: Iterable[tuple[dtime, dtime]],
) -> tuple[tuple[dtime, dtime], ...]:
    """One weekday's open intervals sorted, overlapping or touching ones merged: two rows
    09:00-17:00 and 12:00-13:00 (or the same row twice) are open 09:00-17:00, not nine
    hours. Intervals that close before they open are dropped."""
    merged: list[tuple[dtime, dtime]] = []
    for opens, closes in sorted(intervals):
        if closes <= opens:
            continue
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return tuple(merged)


@dataclass(frozen=True)
class CalendarSpec:
    timezone: str = "UTC"
    is_24_7: bool = True
    # weekday (Monday 0) -> open intervals in local time, sorted and merged (the
    # arithmetic counts each open moment once: ``merge_hours``)
    hours: dict[int, tuple[tuple[dtime, dtime], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        # frozen: set through object.__setattr__ (as dataclasses document for this case)
        merged = {day: merge_hours(spans) for day, spans in self.hours.items()}
        object.__setattr__(self, "hours", {day: s for day, s in merged.items() if s})

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class PolicySpec:
    id: int
    name: str
    priority: str
    team_id: int | None
    channel: str
    first_response_minutes: int | None
    resolution_minutes: int | None
    calendar: CalendarSpec


def _wall_time(day: date, at: dtime, tz: zoneinfo.ZoneInfo) -> datetime:
    """The moment (UTC) the wall clock of ``tz`` reads ``at`` on ``day``. A wall time the
    clocks skip (02:30 on the night they go forward) is the moment they change: the
    03:00 that follows 01:59:59, not the 03:30 that ``fold=0`` gives. A repeated wall time
    (the night they go back) is its first occurrence."""
    local = datetime.combine(day, at, tzinfo=tz)
    moment = local.astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return moment
    # In the gap: the change lies between the two readings of the wall time (fold=1 takes
    # the offset after the change, fold=0 the one before); find its second.
    lo = local.replace(fold=1).astimezone(UTC)  # before the change
    hi = moment  # after it
    after = hi.astimezone(tz).utcoffset()
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0) if hi.microsecond else hi


def _intervals(cal: CalendarSpec, day: date) -> list[tuple[datetime, datetime]]:
    """The open intervals of a local date, as aware datetimes (UTC)."""
    if day in cal.holidays:
        return []
    tz = cal.tz
    out = []
    for opens, closes in cal.hours.get(day.weekday(), ()):
        start = _wall_time(day, opens, tz)
        if closes >= END_OF_DAY:
            end = _wall_time(day + timedelta(days=1), dtime(0), tz)
        else:
            end = _wall_time(day, closes, tz)
        if end > start:
            out.append((start, end))
    return out


def _has_hours(cal: CalendarSpec) -> bool:
    return any(cal.hours.values())


def business_add(cal: CalendarSpec, start: datetime, seconds: float) -> datetime | None:
    """The moment ``seconds`` of business time after ``start`` (None: the calendar never
    opens again, or not within ``HORIZON_DAYS``). Zero seconds from a closed moment is
    ``start`` itself. One step per calendar day, whatever the target."""
    if seconds <= 0:
        return start
    # UTC, so that adding a duration is real elapsed time (an aware local datetime adds
    # wall-clock time, an hour off across a DST change).
    start = start.astimezone(UTC)
    if cal.is_24_7:
        return start + timedelta(seconds=seconds)
    if not _has_hours(cal):
        return None
    remaining = timedelta(seconds=seconds)
    day = start.astimezone(cal.tz).date() - timedelta(days=1)  # an interval may straddle
    closed_days = 0
    for _ in range(HORIZON_DAYS):
        closed_days += 1
        for opens, closes in _intervals(cal, day):
            if closes <= start:
                continue
            closed_days = 0
            begin = max(opens, start)
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        if closed_days > MAX_DAYS:
            return None
        day += timedelta(days=1)
    return None


def business_seconds_between(cal: CalendarSpec, start: datetime, end: datetime) -> float:
    """Business seconds from ``start`` to ``end`` (0 when ``end`` is not later)."""
    if end <= start:
        return 0.0
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if cal.is_24_7:
        return (end - start).total_seconds()
    total = timedelta()
    day = start.astimezone(cal.tz).date() - timedelta(days=1)
    last = end.astimezone(cal.tz).date()
    while day <= last:
        for opens, closes in _intervals(cal, day):
            lo, hi = max(opens, start), min(closes, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds()


def policy_match(
    policies: Iterable[PolicySpec], *, priority: str, team_id: int | None, channel: str
) -> PolicySpec | None:
    """The most specific active policy for a ticket: same priority, and team and channel
    equal to the ticket's or empty. Team and channel beat team, team beats channel,
    channel beats the priority alone."""
    best: PolicySpec | None = None
    best_score = -1
    for p in policies:
        if p.priority != priority:
            continue
        if p.team_id is not None and p.team_id != team_id:
            continue
        if p.channel and p.channel != channel:
            continue
        score = (2 if p.team_id is not None else 0) + (1 if p.channel else 0)
        if score > best_score:
            best, best_score = p, score
    return best


@dataclass(frozen=True)
class DueTimes:
    policy_id: int | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None


NO_SLA = DueTimes(None, None, None)


def due_times(
    policy: PolicySpec | None,
    *,
    created_at: datetime,
    paused_seconds: float = 0,
    first_response_paused_seconds: float = 0,
) -> DueTimes:
    """Due times of a ticket opened at ``created_at`` whose resolution clock has been
    stopped for ``paused_seconds`` and its first-response clock for
    ``first_response_paused_seconds`` of business time (of this policy's calendar:
    ``stopped_seconds``)."""
    if policy is None:
        return NO_SLA
    cal = policy.calendar
    first = (
        business_add(
            cal, created_at, policy.first_response_minutes * 60 + first_response_paused_seconds
        )
        if policy.first_response_minutes is not None
        else None
    )
    resolution = (
        business_add(cal, created_at, policy.resolution_minutes * 60 + paused_seconds)
        if policy.resolution_minutes is not None
        else None
    )
    return DueTimes(policy.id, first, resolution)


def stopped_seconds(
    cal: CalendarSpec, stops: Iterable[tuple[datetime, datetime]], *, until: datetime | None = None
) -> int:
    """Business seconds of ``cal`` inside the stops (``(start, end)`` moments), each cut
    at ``until`` when given (a clock that stopped for good then: the first reply), in
    whole seconds per stop (as ``Ticket.sla_paused_seconds`` always counted them)."""
    total = 0
    for start, end in stops:
        if until is not None:
            end = min(end, until)
        total += int(business_seconds_between(cal, start, end))
    return total


# --- the per-process cache of active policies ------------------------------------------

_lock = threading.Lock()
_cache: dict[str, Any] = {"at": None, "policies": ()}


def sla_policies_forget() -> None:
    with _lock:
        _cache["at"] = None
        _cache["policies"] = ()


def _load() -> tuple[PolicySpec, ...]:
    from tickets.models import SlaPolicy

    calendars: dict[int, CalendarSpec] = {}
    policies = []
    rows = SlaPolicy.objects.filter(is_active=True).select_related("calendar")
    for p in rows.prefetch_related("calendar__hours", "calendar__holidays"):
        cal = calendars.get(p.calendar_id)
        if cal is None:
            hours: dict[int, list[tuple[dtime, dtime]]] = {}
            for h in p.calendar.hours.all():
                hours.setdefault(h.weekday, []).append((h.opens_at, h.closes_at))
            cal = calendars[p.calendar_id] = CalendarSpec(
                timezone=p.calendar.timezone,
                is_24_7=p.calendar.is_24_7,
                hours={k: tuple(sorted(v)) for k, v in hours.items()},
                holidays=frozenset(h.date for h in p.calendar.holidays.all()),
            )
        policies.append(
            PolicySpec(
                id=p.pk,
                name=p.name,
                priority=p.priority,
                team_id=p.team_id,
                channel=p.channel,
                first_response_minutes=p.first_response_minutes,
                resolution_minutes=p.resolution_minutes,
                calendar=cal,
            )
        )
    return tuple(policies)


def sla_policies() -> Sequence[PolicySpec]:
    """The active policies (cached per process; see the module docstring)."""
    ttl = float(getattr(settings, "SLA_POLICY_CACHE_SECONDS", 60))
    now = time.monotonic()
    with _lock:
        at = _cache["at"]
        if at is not None and now - at < ttl:
            return _cache["policies"]  # type: ignore[no-any-return]
    policies = _load()
    with _lock:
        _cache["at"], _cache["policies"] = now, policies
    return policies


def sla_policy_by_id(policy_id: int | None) -> PolicySpec | None:
    """The active policy with this id. A ticket can name a policy this process's cache does
    not know yet (created in another process, given to the ticket by the re-apply, within
    ``SLA_POLICY_CACHE_SECONDS``): then the cache is reloaded once, rather than a resumed
    clock losing the time it was stopped. None for an inactive or deleted policy."""
    if policy_id is None:
        return None
    found = next((p for p in sla_policies() if p.id == policy_id), None)
    if found is None:
        sla_policies_forget()
        found = next((p for p in sla_policies() if p.id == policy_id), None)
    return found


def ticket_due_times(
    *,
    priority: str,
    team_id: int | None,
    channel: str,
    created_at: datetime,
    paused_seconds: float = 0,
) -> DueTimes:
    """Due times for a ticket with these fields (from the cached active policies)."""
    policy = policy_match(sla_policies(), priority=priority, team_id=team_id, channel=channel)
    return due_times(policy, created_at=created_at, paused_seconds=paused_seconds)
