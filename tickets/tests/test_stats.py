"""The dashboard's ticket aggregates on known data (tickets/stats.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tickets import stats
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
    rows = stats.agent_load(start=world["start"], end=world["end"], online_ids={other_agent.pk})
    assert [(r["name"], r["online"], r["open"], r["resolved"]) for r in rows] == [
        ("other-agent", True, 0, 1),
        ("agent", False, 2, 0),
        ("supervisor", False, 0, 0),
    ]
    rows = stats.agent_load(
        start=world["start"], end=world["end"], online_ids=set(), team_ids=[world["a"].pk]
    )
    assert [r["name"] for r in rows] == ["agent"]
