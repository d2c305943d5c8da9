"""The dashboard's query string, validated: ``range`` (a preset, which wins) or
``range=custom`` with ``start``/``end`` (dates, inclusive, in the site's time zone),
``team`` and ``channel`` (repeatable; empty or ``all`` means all). Anything else that is wrong
raises :class:`support.errors.InvalidInput`, which the views answer with 400."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.http import QueryDict
from django.utils import timezone

from dashboard.widgets import DashboardFilters
from support.errors import InvalidInput
from support.parsing import parse_id

#: A preset's label and length. ``24h`` is rolling (the last 24 hours, hour buckets); the
#: day presets (``WHOLE_DAYS``) are whole local days, today included: "Last 7 days" starts at local
#: midnight six days ago, so its day rows are 7 and the first is a whole day (a rolling
#: 7 × 24 h started mid-day and drew an eighth, partial, row).
RANGES: dict[str, tuple[str, timedelta]] = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
}
WHOLE_DAYS = frozenset({"7d", "30d", "90d"})
DEFAULT_RANGE = "7d"
MAX_DAYS = 366
MAX_CHOICES = 50  # teams or channels in one query


@dataclass(frozen=True)
class ParsedFilters:
    filters: DashboardFilters
    range: str  # a key of RANGES, or "custom"
    start_date: date
    end_date: date  # inclusive, as shown in the form

    def query(self) -> list[tuple[str, str]]:
        """The query string that gives these filters back (for links and data URLs)."""
        out: list[tuple[str, str]] = []
        if self.range == "custom":
            out += [("start", self.start_date.isoformat()), ("end", self.end_date.isoformat())]
        else:
            out.append(("range", self.range))
        out += [("team", str(t)) for t in self.filters.team_ids or ()]
        out += [("channel", c) for c in self.filters.channels or ()]
        return out


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={field: [message]})


def _date(raw: str, field: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _bad(field, f"{field} must be a date as YYYY-MM-DD, not {raw[:40]!r}.") from None


def _several(values: Iterable[str], field: str) -> list[str]:
    out = [v.strip() for v in values if v.strip() and v.strip() != "all"]
    if len(out) > MAX_CHOICES:
        raise _bad(field, f"At most {MAX_CHOICES} values of {field}.")
    return out


def filters_parse(
    params: QueryDict | dict[str, Any],
    *,
    team_ids: Iterable[int],
    channels: Iterable[str],
    now: datetime | None = None,
) -> ParsedFilters:
    """Validate the query string against the known teams and channels."""
    now = now or timezone.now()
    get_list = params.getlist if isinstance(params, QueryDict) else _dict_getlist(params)
    raw_range = (params.get("range") or "").strip()
    raw_start = (params.get("start") or "").strip()
    raw_end = (params.get("end") or "").strip()
    tz = timezone.get_current_timezone()
    # A preset range wins over dates (the form sends both; its dates show the window).
    if (raw_start or raw_end) and raw_range in ("", "custom"):
        if not (raw_start and raw_end):
            raise _bad("start", "A custom range needs both start and end.")
        start_day, end_day = _date(raw_start, "start"), _date(raw_end, "end")
        if end_day < start_day:
            raise _bad("end", "end must not be before start.")
        if (end_day - start_day).days + 1 > MAX_DAYS:
            raise _bad("end", f"A range spans at most {MAX_DAYS} days.")
        if start_day > now.astimezone(tz).date():
            raise _bad("start", "start is in the future.")
        start = timezone.make_aware(datetime.combine(start_day, time.min), tz)
        end = timezone.make_aware(datetime.combine(end_day + timedelta(days=1), time.min), tz)
        range_key = "custom"
    else:
        range_key = raw_range or DEFAULT_RANGE
        if range_key not in RANGES:
            choices = ", ".join(RANGES)
            raise _bad("range", f"Unknown range {range_key[:40]!r}; choose one of {choices}.")
        end = now
        length = RANGES[range_key][1]
        end_day = now.astimezone(tz).date()
        if range_key not in WHOLE_DAYS:
            start = now - length
        else:  # whole local days, today included
            first_day = end_day - timedelta(days=length.days - 1)
            start = timezone.make_aware(datetime.combine(first_day, time.min), tz)
        start_day = start.astimezone(tz).date()

    known_teams = set(team_ids)
    teams: list[int] = []
    for raw in _several(get_list("team"), "team"):
        team_id = parse_id(raw)  # ASCII digits only: "²" passes isdigit() but not int()
        if team_id is None or team_id not in known_teams:
            raise _bad("team", f"Unknown team {raw[:40]!r}.")
        teams.append(team_id)
    known_channels = set(channels)
    chosen: list[str] = []
    for raw in _several(get_list("channel"), "channel"):
        if raw not in known_channels:
            raise _bad("channel", f"Unknown channel {raw[:40]!r}.")
        chosen.append(raw)
    filters = DashboardFilters(
        start=start,
        end=end,
        team_ids=tuple(sorted(set(teams))) or None,
        channels=tuple(sorted(set(chosen))) or None,
    )
    return ParsedFilters(filters=filters, range=range_key, start_date=start_day, end_date=end_day)


def _dict_getlist(params: dict[str, Any]) -> Any:
    def get_list(key: str) -> list[str]:
        value = params.get(key)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]

    return get_list
