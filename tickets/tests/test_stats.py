"""The dashboard's ticket aggregates on known data (tickets/stats.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP
from tickets import stats
from tickets.dashboard_widgets import bucket_label
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


def _ticket(customer, *, at, **fields):
    ticket = Ticket.objects.create(customer=customer, subject="s", **fields)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=at)
    ticket.refresh_from_db()
    return ticket


@pytest.fixture
def world(agent, other_agent):
    now = timezone.now().replace(microsecond=0)
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    a = Team.objects.create(name="Alpha", slug="alpha")
    b = Team.objects.create(name="Beta", slug="beta")
    a.members.add(agent)
    b.members.add(other_agent)
    t1 = _ticket(customer, at=now - timedelta(hours=1), team=a, channel="email", assignee=agent)
    t2 = _ticket(
        customer,
        at=now - timedelta(days=2),
        team=a,
        channel="webchat",
        status="open",
        assignee=agent,
        first_response_at=now - timedelta(days=2) + timedelta(hours=1),
    )
    t3 = _ticket(
        customer,
        at=now - timedelta(days=3),
        team=b,
        channel="email",
        status="resolved",
        assignee=other_agent,
        first_response_at=now - timedelta(days=3) + timedelta(hours=2),
        resolved_at=now - timedelta(days=3) + timedelta(hours=10),
    )
    t4 = _ticket(customer, at=now - timedelta(days=40), team=b, channel="email", status="pending")
    merged = _ticket(customer, at=now - timedelta(hours=2), channel="api", merged_into=t1)
    return {
        "now": now,
        "a": a,
        "b": b,
        "tickets": (t1, t2, t3, t4, merged),
        "start": now - timedelta(days=7),
        "end": now + timedelta(seconds=1),
    }


def test_backlog_counts_open_tickets_by_team_and_status_without_merged(world):
    rows = stats.ticket_backlog()
    assert rows == [
        {"team_id": world["a"].pk, "team": "Alpha", "new": 1, "open": 1, "pending": 0, "total": 2},
        {"team_id": world["b"].pk, "team": "Beta", "new": 0, "open": 0, "pending": 1, "total": 1},
    ]


def test_backlog_filters_by_team_and_channel(world):
    assert [r["total"] for r in stats.ticket_backlog(team_ids=[world["b"].pk])] == [1]
    rows = stats.ticket_backlog(channels=["webchat"])
    assert [(r["team"], r["open"], r["total"]) for r in rows] == [("Alpha", 1, 1)]


def test_flow_has_every_bucket_and_counts_created_and_resolved(world):
    rows = stats.ticket_flow(start=world["start"], end=world["end"], bucket="day")
    assert len(rows) == 8  # a 7-day window starting mid-day touches 8 calendar days
    assert sum(r["created"] for r in rows) == 3
    assert sum(r["resolved"] for r in rows) == 1
    by_day = {r["at"].date(): r for r in rows}
    assert by_day[(world["now"] - timedelta(days=2)).date()]["created"] == 1
    hourly = stats.ticket_flow(
        start=world["now"] - timedelta(hours=24), end=world["end"], bucket="hour"
    )
    assert len(hourly) in (25, 26)
    assert sum(r["created"] for r in hourly) == 1


def test_volume_by_channel_in_window(world):
    rows = stats.ticket_volume_by_channel(start=world["start"], end=world["end"])
    assert [(r["channel"], r["tickets"], r["open"]) for r in rows] == [
        ("email", 2, 1),
        ("webchat", 1, 1),
    ]
    rows = stats.ticket_volume_by_channel(
        start=world["start"], end=world["end"], team_ids=[world["b"].pk]
    )
    assert [(r["channel"], r["tickets"]) for r in rows] == [("email", 1)]


def test_response_times_median_and_p90(world):
    figures = stats.ticket_response_times(start=world["start"], end=world["end"])
    overall = figures["overall"]
    assert (overall["tickets"], overall["answered"], overall["resolved"]) == (3, 2, 1)
    assert overall["first_response_p50"] == pytest.approx(5400)
    assert overall["first_response_p90"] == pytest.approx(3600 + 0.9 * 3600)
    assert overall["resolution_p50"] == pytest.approx(36000)
    assert [t["team"] for t in figures["teams"]] == ["Alpha", "Beta"]
    beta = stats.ticket_response_times(
        start=world["start"], end=world["end"], team_ids=[world["b"].pk]
    )["overall"]
    assert beta["first_response_p50"] == pytest.approx(7200)


def test_response_times_without_data_are_none(world):
    far = world["now"] - timedelta(days=300)
    overall = stats.ticket_response_times(start=far, end=far + timedelta(days=1))["overall"]
    assert overall["tickets"] == 0
    assert overall["first_response_p50"] is None


def test_agent_load_online_first(world, agent, other_agent, supervisor):
    load = stats.agent_load(start=world["start"], end=world["end"], online_ids={other_agent.pk})
    assert [(r["name"], r["online"], r["open"], r["resolved"]) for r in load["rows"]] == [
        ("other-agent", True, 0, 1),
        ("agent", False, 2, 0),
        ("supervisor", False, 0, 0),
    ]
    assert (load["people"], load["online"], load["open"]) == (3, 1, 2)
    load = stats.agent_load(
        start=world["start"], end=world["end"], online_ids=set(), team_ids=[world["a"].pk]
    )
    assert [r["name"] for r in load["rows"]] == ["agent"]


# --- a ticket closed without being resolved ends at its close (review B1) ----------------


def test_a_ticket_closed_unresolved_counts_as_resolved_in_flow_times_and_agent_load(world, agent):
    """An agent may close a new, open or pending ticket straight away (only ``closed_at``
    is set): it ended, so it counts as resolved at its close, as in the SLA attainment.
    Before, it vanished from "Resolved", the resolution times and the agent's figure. A
    ticket resolved and then closed counts once, at its resolution."""
    now, customer = world["now"], Customer.objects.get(email="ada@example.com")
    _ticket(
        customer,
        at=now - timedelta(hours=5),
        team=world["a"],
        status="closed",
        assignee=agent,
        closed_at=now - timedelta(hours=1),
    )
    _ticket(
        customer,
        at=now - timedelta(hours=6),
        team=world["a"],
        status="closed",
        assignee=agent,
        resolved_at=now - timedelta(hours=4),
        closed_at=now - timedelta(hours=2),
    )
    rows = stats.ticket_flow(start=world["start"], end=world["end"], bucket="day")
    assert sum(r["resolved"] for r in rows) == 3  # t3, the closed one, the resolved one
    assert sum(r["created"] for r in rows) == 5
    hourly = stats.ticket_flow(start=now - timedelta(hours=6), end=world["end"], bucket="hour")
    by_hour = {r["at"]: r["resolved"] for r in hourly if r["resolved"]}

    def hour_of(at):
        return timezone.localtime(at).replace(minute=0, second=0, microsecond=0)

    assert by_hour == {hour_of(now - timedelta(hours=4)): 1, hour_of(now - timedelta(hours=1)): 1}
    times = stats.ticket_response_times(start=world["start"], end=world["end"])["overall"]
    assert (times["tickets"], times["resolved"]) == (5, 3)
    # 10 h (t3), 4 h (closed at 1 h ago), 2 h (resolved 4 h ago, closed later: 2 h)
    assert times["resolution_p50"] == pytest.approx(4 * 3600)
    load = stats.agent_load(start=world["start"], end=world["end"], online_ids=set())
    assert {r["name"]: r["resolved"] for r in load["rows"]}["agent"] == 2


# --- hour buckets across a DST change (review B4) ----------------------------------------


@pytest.fixture
def paris(settings):
    settings.TIME_ZONE = "Europe/Paris"
    with timezone.override(ZoneInfo("Europe/Paris")):
        yield ZoneInfo("Europe/Paris")


def test_a_fall_back_day_has_25_hour_buckets_each_counted(paris):
    """The clocks go back at 03:00 CEST to 02:00 CET on 2026-10-25: 02:00-03:00 happens
    twice. Buckets stepped in local wall-clock time skipped the second, and the
    truncation put both tickets in the first: the day had 24 (23 + 1) buckets."""
    customer = Customer.objects.create(name="C", email="c@example.com")
    for at in (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 10, 25, 1, 40, tzinfo=UTC),  # 02:40 CET
    ):
        _ticket(customer, at=at)
    start, end = datetime(2026, 10, 25, tzinfo=paris), datetime(2026, 10, 26, tzinfo=paris)
    rows = stats.ticket_flow(start=start, end=end, bucket="hour")
    assert len(rows) == 25
    assert [r["at"].astimezone(UTC) for r in rows] == [
        start.astimezone(UTC) + timedelta(hours=h) for h in range(25)
    ]
    assert [(bucket_label(r["at"], "hour"), r["created"]) for r in rows[1:5]] == [
        ("10-25 01:00", 0),
        ("10-25 02:00 CEST", 1),
        ("10-25 02:00 CET", 2),
        ("10-25 03:00", 0),
    ]
    assert rows[-1]["at"].hour == 23
    day = stats.ticket_flow(start=start, end=end, bucket="day")
    assert [(bucket_label(r["at"], "day"), r["created"]) for r in day] == [("2026-10-25", 3)]


def test_a_spring_forward_day_has_23_hour_buckets(paris):
    customer = Customer.objects.create(name="C", email="c@example.com")
    _ticket(customer, at=datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST
    start, end = datetime(2026, 3, 29, tzinfo=paris), datetime(2026, 3, 30, tzinfo=paris)
    rows = stats.ticket_flow(start=start, end=end, bucket="hour")
    assert len(rows) == 23
    labels = [bucket_label(r["at"], "hour") for r in rows]
    assert labels[1:4] == ["03-29 01:00", "03-29 03:00", "03-29 04:00"]
    assert [r["created"] for r in rows][1:4] == [0, 1, 0]


# --- the agents' totals count everyone; a team's tickets count whoever has them ---------


def test_agent_load_totals_count_everyone_not_only_the_rows_shown(django_user_model):
    """The widget shows the first ``limit`` rows; its "Online now" and "Open tickets
    assigned" were summed over those rows only (30 of 35 agents: 30 open, not 35)."""
    group = Group.objects.get_or_create(name=AGENTS_GROUP)[0]
    customer = Customer.objects.create(name="C", email="c@example.com")
    people = []
    for i in range(5):
        user = django_user_model.objects.create_user(username=f"ag{i}", password="pw-12345678")
        user.groups.add(group)
        people.append(user)
        for _ in range(i):
            Ticket.objects.create(customer=customer, subject="s", status="open", assignee=user)
    now = timezone.now()
    load = stats.agent_load(
        start=now - timedelta(days=1),
        end=now,
        online_ids={people[0].pk, people[1].pk},
        limit=2,
    )
    assert [(r["name"], r["online"], r["open"]) for r in load["rows"]] == [
        ("ag1", True, 1),
        ("ag0", True, 0),
    ]
    assert (load["people"], load["online"], load["open"]) == (5, 2, 10)


def test_agent_load_of_a_team_counts_its_tickets_assigned_outside_it(agent, supervisor):
    """A team ticket assigned to a supervisor (not a member) was left out of "Open tickets
    assigned" while the backlog counted it."""
    customer = Customer.objects.create(name="C", email="c@example.com")
    alpha = Team.objects.create(name="Alpha", slug="alpha")
    alpha.members.add(agent)
    for assignee in (agent, supervisor):
        Ticket.objects.create(
            customer=customer, subject="s", status="open", team=alpha, assignee=assignee
        )
    Ticket.objects.create(customer=customer, subject="s", status="open", assignee=supervisor)
    now = timezone.now()
    load = stats.agent_load(
        start=now - timedelta(days=1), end=now, online_ids=set(), team_ids=[alpha.pk]
    )
    assert [(r["name"], r["open"]) for r in load["rows"]] == [("agent", 1), ("supervisor", 1)]
    assert (load["people"], load["open"]) == (2, 2)
    assert stats.ticket_backlog(team_ids=[alpha.pk])[0]["total"] == 2
