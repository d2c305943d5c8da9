"""Business-time arithmetic and policy matching (no database)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tickets.sla import (
    CalendarSpec,
    PolicySpec,
    business_add,
    business_seconds_between,
    due_times,
    policy_match,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = ((time(9), time(17)),)
Hours = dict[int, tuple[tuple[time, time], ...]]
WEEKDAYS: Hours = {d: NINE_TO_FIVE for d in range(5)}
END = time(23, 59, 59)


def _cal(
    tz: str = "Europe/Berlin", hours: Hours | None = None, holidays: Iterable[date] = ()
) -> CalendarSpec:
    return CalendarSpec(
        timezone=tz,
        is_24_7=False,
        hours=WEEKDAYS if hours is None else hours,
        holidays=frozenset(holidays),
    )


def _local(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def test_friday_afternoon_runs_over_the_weekend_to_monday():
    cal = _cal()
    start = _local(BERLIN, 2026, 12, 4, 16, 0)  # Friday 16:00
    due = business_add(cal, start, 2 * 3600)
    assert due == _local(BERLIN, 2026, 12, 7, 10, 0)  # Monday 10:00
    assert business_seconds_between(cal, start, due) == 2 * 3600


def test_a_holiday_is_skipped():
    cal = _cal(holidays=[date(2026, 12, 7)])
    due = business_add(cal, _local(BERLIN, 2026, 12, 4, 16, 0), 2 * 3600)
    assert due == _local(BERLIN, 2026, 12, 8, 10, 0)  # Tuesday


def test_before_opening_the_clock_starts_at_opening_and_a_lunch_break_does_not_count():
    cal = _cal(hours={0: ((time(9), time(12)), (time(13), time(17)))})
    start = _local(BERLIN, 2026, 12, 7, 6, 30)  # Monday, before opening
    assert business_add(cal, start, 3 * 3600 + 30 * 60) == _local(BERLIN, 2026, 12, 7, 13, 30)


def test_zero_target_is_the_start_itself():
    cal = _cal()
    start = _local(BERLIN, 2026, 12, 5, 12, 0)  # Saturday: closed
    assert business_add(cal, start, 0) == start


def test_dst_start_makes_the_night_interval_an_hour_shorter():
    # Europe/Berlin moves from 02:00 CET to 03:00 CEST on Sunday 2026-03-29: that night's
    # 01:00-05:00 interval lasts three real hours.
    cal = _cal(hours={d: ((time(1), time(5)),) for d in range(7)})
    start = _local(BERLIN, 2026, 3, 28, 6, 0)  # Saturday, after closing
    assert business_seconds_between(cal, start, _local(BERLIN, 2026, 3, 29, 12, 0)) == 3 * 3600
    due = business_add(cal, start, 3 * 3600 + 30 * 60)
    assert due == _local(BERLIN, 2026, 3, 30, 1, 30)  # Monday 01:30 CEST
    assert due.astimezone(UTC) == datetime(2026, 3, 29, 23, 30, tzinfo=UTC)


def test_dst_end_makes_the_night_interval_an_hour_longer():
    cal = _cal(hours={d: ((time(1), time(5)),) for d in range(7)})
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 01:00-05:00 lasts five hours.
    start = _local(BERLIN, 2026, 10, 25, 0, 0)
    assert business_seconds_between(cal, start, _local(BERLIN, 2026, 10, 25, 12, 0)) == 5 * 3600


def test_local_date_not_utc_date_decides_the_weekday():
    # Saturday 01:00 UTC is Friday 20:00 in New York: closed until Monday 09:00 there.
    cal = _cal(tz="America/New_York")
    start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert business_add(cal, start, 3600) == _local(NEW_YORK, 2026, 12, 7, 10, 0)


def test_the_rest_of_todays_interval_counts_in_the_calendars_zone():
    # Open 09:00-17:00 in New York; 21:30 UTC on Monday is 16:30 there: 30 minutes left.
    cal = _cal(tz="America/New_York")
    start = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)
    assert business_add(cal, start, 45 * 60) == _local(NEW_YORK, 2026, 12, 8, 9, 15)


def test_24_7_is_plain_elapsed_time():
    cal = CalendarSpec(timezone="Europe/Berlin", is_24_7=True)
    start = _local(BERLIN, 2026, 3, 28, 23, 0)
    # four real hours across the clock change: 22:00 UTC + 4h, 04:00 CEST (a Berlin-aware
    # ``start + timedelta(hours=4)`` would be wall-clock time, 03:00 CEST, an hour short)
    after = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert business_add(cal, start, 4 * 3600) == after
    assert business_seconds_between(cal, start, after) == 4 * 3600


def test_a_calendar_that_never_opens_gives_no_due_time():
    assert business_add(_cal(hours={}), _local(BERLIN, 2026, 12, 4, 9, 0), 60) is None
    every_day_off = _cal(hours={0: NINE_TO_FIVE})
    mondays = [date(2026, 12, 7) + timedelta(weeks=w) for w in range(200)]
    cal = CalendarSpec(
        timezone="Europe/Berlin",
        is_24_7=False,
        hours=every_day_off.hours,
        holidays=frozenset(mondays),
    )
    assert business_add(cal, _local(BERLIN, 2026, 12, 4, 9, 0), 60) is None


def _policy(pk: int, *, team_id=None, channel="", priority="high") -> PolicySpec:
    return PolicySpec(
        id=pk,
        name=f"p{pk}",
        priority=priority,
        team_id=team_id,
        channel=channel,
        first_response_minutes=60,
        resolution_minutes=None,
        calendar=CalendarSpec(),
    )


def test_the_most_specific_policy_wins():
    base, by_channel, by_team, both = (
        _policy(1),
        _policy(2, channel="email"),
        _policy(3, team_id=7),
        _policy(4, team_id=7, channel="email"),
    )
    everything = [both, by_team, by_channel, base, _policy(5, priority="low")]

    def match(**kw):
        found = policy_match(everything, **{"priority": "high", **kw})
        return found.id if found else None

    assert match(team_id=7, channel="email") == 4
    assert match(team_id=7, channel="webchat") == 3
    assert match(team_id=8, channel="email") == 2
    assert match(team_id=None, channel="phone") == 1
    assert policy_match(everything, priority="normal", team_id=7, channel="email") is None
    # without the exact pair, the team's policy beats the channel's
    found = policy_match([by_channel, by_team, base], priority="high", team_id=7, channel="email")
    assert found == by_team


def test_due_times_add_the_stopped_time_to_the_resolution_only():
    policy = PolicySpec(
        id=1,
        name="p",
        priority="high",
        team_id=None,
        channel="",
        first_response_minutes=60,
        resolution_minutes=120,
        calendar=CalendarSpec(),
    )
    created = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    due = due_times(policy, created_at=created, paused_seconds=1800)
    assert due.first_response_due_at == created + timedelta(hours=1)
    assert due.resolution_due_at == created + timedelta(hours=2, minutes=30)
    assert due_times(None, created_at=created).policy_id is None


# --- review probes: exact due times a support team relies on ---------------------------

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("zone", "friday", "monday_10_local_utc"),
    [
        # spring forward: London 01:00 GMT -> 02:00 BST on Sunday 2026-03-29, New York
        # 02:00 EST -> 03:00 EDT on Sunday 2026-03-08
        (LONDON, (2026, 3, 27), datetime(2026, 3, 30, 9, 0, tzinfo=UTC)),  # 10:00 BST
        (NEW_YORK, (2026, 3, 6), datetime(2026, 3, 9, 14, 0, tzinfo=UTC)),  # 10:00 EDT
        # fall back: London 02:00 BST -> 01:00 GMT on Sunday 2026-10-25, New York
        # 02:00 EDT -> 01:00 EST on Sunday 2026-11-01
        (LONDON, (2026, 10, 23), datetime(2026, 10, 26, 10, 0, tzinfo=UTC)),  # 10:00 GMT
        (NEW_YORK, (2026, 10, 30), datetime(2026, 11, 2, 15, 0, tzinfo=UTC)),  # 10:00 EST
    ],
)
def test_a_clock_change_weekend_keeps_office_hours(zone, friday, monday_10_local_utc):
    """Friday 16:00 + 2 business hours is Monday 10:00 local across either clock change."""
    calendar = _cal(tz=zone.key)
    year, month, day = friday
    due = business_add(calendar, _local(zone, year, month, day, 16, 0), 2 * 3600)
    assert due == monday_10_local_utc


def test_a_holiday_is_the_local_date_not_the_utc_date():
    # Auckland is UTC+13 in December: its holiday Tuesday 2026-12-08 runs from Monday
    # 11:00 UTC. Monday 16:00 + 2h: one hour on Monday, one on Wednesday.
    auckland = ZoneInfo("Pacific/Auckland")
    cal = _cal(tz="Pacific/Auckland", holidays=[date(2026, 12, 8)])
    due = business_add(cal, _local(auckland, 2026, 12, 7, 16, 0), 2 * 3600)
    assert due == _local(auckland, 2026, 12, 9, 10, 0)


def test_a_night_shift_split_at_midnight_has_no_one_second_hole():
    # Monday 22:00-23:59:59 (the documented "until midnight") and Tuesday 00:00-06:00.
    cal = _cal(
        tz="Europe/London",
        hours={0: ((time(22), time(23, 59, 59)),), 1: ((time(0), time(6)),)},
    )
    due = business_add(cal, _local(LONDON, 2026, 12, 7, 23, 0), 2 * 3600)
    assert due == _local(LONDON, 2026, 12, 8, 1, 0)
    night = business_seconds_between(
        cal, _local(LONDON, 2026, 12, 7, 21, 0), _local(LONDON, 2026, 12, 8, 7, 0)
    )
    assert night == 8 * 3600


def test_hours_round_the_clock_every_day_lose_no_second_a_day():
    cal = _cal(tz="UTC", hours={d: ((time(0), time(23, 59, 59)),) for d in range(7)})
    start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert business_add(cal, start, 5 * 86400) == datetime(2026, 12, 12, 12, 0, tzinfo=UTC)


def test_a_target_of_years_of_business_time_still_has_a_due_time():
    # 5,000 business hours at 8 a day, Monday to Friday: 625 days, 125 weeks (more than
    # 800 calendar days, the bound for a calendar that never opens again).
    cal = _cal(tz="Europe/London")
    due = business_add(cal, _local(LONDON, 2026, 1, 5, 9, 0), 5000 * 3600)
    assert due == _local(LONDON, 2028, 5, 26, 17, 0)  # a Friday, 17:00 BST


def test_an_absurd_target_gives_no_due_time_instead_of_walking_forever():
    # The largest target the admin takes (PositiveIntegerField): thousands of years.
    cal = _cal(tz="Europe/London")
    assert business_add(cal, _local(LONDON, 2026, 1, 5, 9, 0), 2_147_483_647 * 60) is None


def test_a_local_start_inside_an_interval_spanning_the_clock_change_adds_real_time():
    # Open 00:00-06:00 every day in London. 00:30 GMT on 2026-03-29 + 2h of business time
    # is 02:30 UTC (03:30 BST), whether the start comes in UTC or in London time.
    cal = _cal(tz="Europe/London", hours={d: ((time(0), time(6)),) for d in range(7)})
    start = _local(LONDON, 2026, 3, 29, 0, 30)
    expected = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert business_add(cal, start.astimezone(UTC), 2 * 3600) == expected
    assert business_add(cal, start, 2 * 3600) == expected


def test_overlapping_or_duplicate_hours_count_each_open_moment_once():
    """A stray 12:00-13:00 row inside 09:00-17:00, and the same row twice: open 8 hours,
    not 9 (``merge_hours``, applied to every calendar)."""
    monday = _local(BERLIN, 2026, 12, 7, 9, 0)
    for rows in (
        ((time(9), time(17)), (time(12), time(13))),
        ((time(9), time(17)), (time(9), time(17))),
        ((time(12), time(17)), (time(9), time(13))),
    ):
        cal = _cal(hours={d: rows for d in range(5)})
        assert cal.hours[0] == ((time(9), time(17)),)
        assert business_seconds_between(cal, monday, monday.replace(hour=17)) == 8 * 3600
        assert business_add(cal, monday, 8 * 3600) == monday.replace(hour=17)
        assert business_add(cal, monday, 9 * 3600) == _local(BERLIN, 2026, 12, 8, 10, 0)


def test_touching_hours_are_one_interval_and_a_night_shift_keeps_midnight():
    cal = _cal(hours={0: ((time(9), time(12)), (time(12), time(17))), 1: ((time(22), END),)})
    assert cal.hours[0] == ((time(9), time(17)),)
    assert cal.hours[1] == ((time(22), END),)


def test_an_opening_in_the_skipped_hour_is_the_moment_the_clocks_change():
    """New York skips 02:00-03:00 on Sunday 2026-03-08: a 02:30-03:30 interval is open
    from 03:00 EDT (the change) to 03:30, 30 minutes (``fold=0`` made it 03:30-03:30,
    nothing); 02:00-02:45 never shows on the wall that night (nothing open); 01:30-02:30
    is open from 01:30 EST to the change, 30 minutes (not 90)."""
    night = _local(NEW_YORK, 2026, 3, 8, 0, 0)
    later = night + timedelta(hours=8)
    for rows, minutes in (
        (((time(2, 30), time(3, 30)),), 30),
        (((time(2, 0), time(2, 45)),), 0),
        (((time(1, 30), time(2, 30)),), 30),
    ):
        cal = _cal("America/New_York", hours={6: rows})
        assert business_seconds_between(cal, night, later) == minutes * 60
    cal = _cal("America/New_York", hours={6: ((time(2, 30), time(3, 30)),)})
    assert business_add(cal, night, 60) == datetime(2026, 3, 8, 7, 1, tzinfo=UTC)
