"""The demo's routing history is marked as demo data wherever it is shown: the ticket's
routing panel, the API and the dashboard's routing widgets. Before, its invented Bedrock
decisions (tokens, cost, throttling, capped confidence, agents' verdicts) looked like real
ones; only the first words of their reasoning said "Demo history"."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.test import Client

from routing.demo import load_demo_routing
from routing.models import RoutingDecision
from tickets import services as ticket_services
from tickets.demo import DEMO_TAG

pytestmark = pytest.mark.django_db

SUBJECTS = ["Cancel my order", "Where is my refund", "Change my address", "Invoice copy"]


@pytest.fixture
def demo_tickets(routing_on: Any, teams: Any, customer: Any) -> list[Any]:
    return [
        ticket_services.ticket_create(
            customer=customer, subject=subject, body=f"{subject}, please.", tags=[DEMO_TAG]
        )
        for subject in SUBJECTS
    ]


def test_the_demo_history_is_marked_and_an_older_demo_gets_the_mark_on_the_next_load(
    demo_tickets: list[Any],
) -> None:
    load_demo_routing(progress=lambda _: None)
    decisions = RoutingDecision.objects.order_by("ticket_id")
    assert decisions.count() == len(SUBJECTS)
    assert all(d.demo for d in decisions)
    assert {d.provider for d in decisions} == {"bedrock"}  # the seed metrics it stands in for
    # a demo loaded before the mark existed: the next load marks it, and adds nothing
    RoutingDecision.objects.update(demo=False)
    load_demo_routing(progress=lambda _: None)
    assert RoutingDecision.objects.count() == len(SUBJECTS)
    assert RoutingDecision.objects.filter(demo=False).count() == 0


def test_a_real_decision_is_not_marked(routing_on: Any, teams: Any, customer: Any) -> None:
    from routing.services import routing_decide

    ticket = ticket_services.ticket_create(customer=customer, subject="Cancel my order")
    assert routing_decide(ticket_id=ticket.pk).demo is False


def test_the_panel_and_the_api_say_demo_data(
    demo_tickets: list[Any], supervisor: Any, supervisor_client: Any
) -> None:
    load_demo_routing(progress=lambda _: None)
    client = Client()
    client.force_login(supervisor)
    ticket = demo_tickets[0]
    page = client.get(f"/tickets/T-{ticket.pk:06d}/")
    assert page.status_code == 200
    panel = BeautifulSoup(page.content, "html.parser").select_one(".routing-panel")
    assert panel is not None
    mark = panel.select_one(".routing-demo")
    assert mark is not None
    assert mark.get_text().startswith("Demo data Made up by the demo loader")
    latest = supervisor_client.get(f"/api/tickets/{ticket.pk}/routing").json()["latest"]
    assert latest["demo"] is True


def test_the_panel_of_a_real_decision_has_no_demo_mark(
    routing_on: Any, teams: Any, customer: Any, supervisor: Any
) -> None:
    from routing.services import routing_decide

    ticket = ticket_services.ticket_create(customer=customer, subject="Cancel my order")
    routing_decide(ticket_id=ticket.pk)
    client = Client()
    client.force_login(supervisor)
    page = client.get(f"/tickets/T-{ticket.pk:06d}/")
    assert b"routing-panel" in page.content
    assert b"routing-demo" not in page.content


@pytest.mark.parametrize(
    "widget",
    ["routing", "routing_time", "routing_confidence", "routing_teams", "routing_priority"],
)
def test_the_dashboards_routing_figures_say_how_many_decisions_are_demo_ones(
    demo_tickets: list[Any], supervisor: Any, widget: str
) -> None:
    client = Client()
    client.force_login(supervisor)
    before = client.get(f"/dashboard/data/{widget}/?range=24h").json()
    assert "Demo data" not in [s["label"] for s in before["stats"]]
    load_demo_routing(progress=lambda _: None)
    body = client.get(f"/dashboard/data/{widget}/?range=24h").json()
    first = body["stats"][0]
    assert (first["label"], first["value"]) == ("Demo data", len(SUBJECTS))
    assert body["note"].startswith(f"Demo data: {len(SUBJECTS)} of the decisions counted here")
