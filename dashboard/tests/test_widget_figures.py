"""Headline figures of the agents, calls and flow widgets through the data endpoints
(review B): totals over everyone, not only the rows shown; the call dead letters a level;
a ticket closed without being resolved counted as resolved."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from calls.models import CallEvent, EventStatus
from support.auth.roles import AGENTS_GROUP
from tickets import services
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def sup(supervisor) -> Client:
    client = Client()
    client.force_login(supervisor)
    return client


def _stats(body: dict) -> dict:
    return {s["label"]: s["value"] for s in body["stats"]}


def test_agents_widget_totals_count_everyone_and_say_when_rows_are_cut(
    sup, django_user_model, supervisor
):
    """35 agents with a ticket each: the table shows 30 rows, and "Open tickets assigned"
    summed those 30 (30, not 35) without saying anything was cut."""
    group = Group.objects.get_or_create(name=AGENTS_GROUP)[0]
    customer = Customer.objects.create(name="C", email="c@example.com")
    for i in range(35):
        user = django_user_model.objects.create_user(username=f"ag{i:02d}", password="pw-1234567")
        user.groups.add(group)
        Ticket.objects.create(customer=customer, subject="s", status="open", assignee=user)
    body = sup.get("/dashboard/data/agents/").json()
    assert len(body["rows"]) == 30
    assert _stats(body) == {"Online now": 0, "Open tickets assigned": 35}
    assert body["columns"][0] == "Agent (showing 30 of 36)"  # and the supervisor
    assert body["note"].startswith("Showing 30 of 36 agents: online first, then the busiest")
    text = sup.get("/dashboard/data/agents/?format=csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Agent (showing 30 of 36)", "Online", "Open tickets", "Resolved in range"]
    assert len(rows) == 31
    page = sup.get("/dashboard/widgets/agents/").content.decode()
    assert "Showing 30 of 36 agents" in page


def test_agents_widget_says_nothing_when_every_row_is_shown(sup, agent):
    body = sup.get("/dashboard/data/agents/").json()
    assert body["columns"][0] == "Agent"
    assert "Showing" not in body["note"]


def test_call_dead_letters_are_counted_now_whatever_the_range(sup):
    """A record that failed three days ago still waits for a redelivery: the 24-hour view
    said 0 "Records awaiting redelivery" while /metrics reported 1."""
    event = CallEvent.objects.create(
        source="ctr", external_id="x1", status=EventStatus.FAILED, error="bad"
    )
    CallEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=3))
    CallEvent.objects.create(source="ctr", external_id="x2", status=EventStatus.PROCESSED)
    body = sup.get("/dashboard/data/calls/?range=24h").json()
    assert _stats(body)["Records awaiting redelivery"] == 1
    hint = {s["label"]: s["hint"] for s in body["stats"]}["Records awaiting redelivery"]
    assert hint.startswith("now")
    assert "Records awaiting redelivery: now, whatever the range." in body["note"]
    page = sup.get("/dashboard/widgets/calls/?range=24h").content.decode()
    assert '<a href="/admin/calls/callevent/?status__exact=failed">' in page


def test_flow_counts_a_ticket_closed_without_being_resolved(sup, agent):
    customer = Customer.objects.create(name="C", email="c@example.com")
    ticket = Ticket.objects.create(customer=customer, subject="s", status="open")
    services.ticket_update(ticket=ticket, actor=agent, status="closed")
    body = sup.get("/dashboard/data/flow/?range=24h").json()
    assert _stats(body) == {"Created": 1, "Resolved": 1}
    assert "or closed in it without being resolved" in body["note"]


def test_agents_widget_of_a_team_counts_its_tickets_assigned_to_a_non_member(
    sup, agent, supervisor
):
    """With a team filter the widget kept the team's members only: the team's ticket
    assigned to a supervisor vanished from "Open tickets assigned" (1, the backlog 2)."""
    customer = Customer.objects.create(name="C", email="c@example.com")
    alpha = Team.objects.create(name="Alpha", slug="alpha")
    alpha.members.add(agent)
    for assignee in (agent, supervisor):
        Ticket.objects.create(
            customer=customer, subject="s", status="open", team=alpha, assignee=assignee
        )
    body = sup.get(f"/dashboard/data/agents/?team={alpha.pk}").json()
    assert _stats(body)["Open tickets assigned"] == 2
    assert [row[0] for row in body["rows"]] == ["agent", "supervisor"]
    backlog = sup.get(f"/dashboard/data/backlog/?team={alpha.pk}").json()
    assert _stats(backlog)["Open tickets now"] == 2
