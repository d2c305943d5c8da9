"""Customers are visible through their tickets: an agent may see a customer (context,
orders, history, the ticket sidebar) only if it may see at least one of the customer's
tickets; supervisors see all. Otherwise 404, as for tickets (issue #13, item 1)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from support.errors import NotFound
from tickets import selectors, services
from tickets.context import services as context_services
from tickets.context.services import OrderInput
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim(teams: tuple[Team, Team]) -> Customer:
    """A customer whose only ticket is Billing's, with an order and an interaction."""
    billing, _ = teams
    customer = Customer.objects.create(
        name="Grace Hopper", email="grace@example.com", phone="+15550100"
    )
    ticket = services.ticket_create(
        customer=customer, subject="Refund for order ORD-1", body="My card...", team=billing
    )
    context_services.order_upsert(
        customer=customer,
        data=OrderInput(
            number="ORD-1",
            status="delivered",
            total=Decimal("99.00"),
            placed_at=timezone.now() - timedelta(days=3),
            items=[],
        ),
    )
    context_services.interaction_record(
        customer_id=customer.pk,
        source_key=f"message:{ticket.pk}",
        channel="email",
        kind="message",
        occurred_at=timezone.now(),
        summary="My card was charged twice",
        ticket_id=ticket.pk,
    )
    return customer


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_customer_context_of_an_invisible_customer_is_404(victim, agent, other_agent, supervisor):
    url = f"/api/customers/{victim.pk}/context"
    outside = _client(other_agent).get(url)
    assert outside.status_code == 404
    assert outside.json()["error"]["message"] == f"No customer '{victim.pk}'."
    assert "Grace" not in outside.content.decode()
    assert _client(other_agent).get("/api/customers/999999/context").json() == {
        "error": {"code": "not_found", "message": "No customer '999999'.", "details": {}}
    }
    inside = _client(agent).get(url)
    assert inside.status_code == 200
    assert inside.json()["orders"]["count"] == 1
    assert _client(supervisor).get(url).status_code == 200


def test_assignee_sees_the_customer_of_its_ticket_in_another_team(victim, other_agent):
    ticket = Ticket.objects.get(customer=victim)
    services.ticket_assign(ticket=ticket, assignee=other_agent)
    assert _client(other_agent).get(f"/api/customers/{victim.pk}/context").status_code == 200


def test_create_with_an_invisible_customer_id_is_like_an_unknown_one(victim, other_agent):
    client = _client(other_agent)
    body = {"subject": "Hi", "customer_id": victim.pk, "description": "x"}
    response = client.post("/api/tickets?include=context", body, format="json")
    unknown = client.post(
        "/api/tickets?include=context", {**body, "customer_id": 999999}, format="json"
    )
    assert response.status_code == unknown.status_code == 400
    assert response.json()["error"]["details"] == {"customer_id": ["Unknown customer."]}
    assert "Grace" not in response.content.decode()
    assert Ticket.objects.filter(customer=victim).count() == 1


def test_create_by_email_into_another_team_returns_no_context(victim, teams, other_agent):
    """The email path links to the existing customer (as every channel does), but the
    context is returned only when the caller may then see the customer."""
    billing, _ = teams
    response = _client(other_agent).post(
        "/api/tickets?include=context",
        {"subject": "Hi", "customer": {"email": "grace@example.com"}, "team_id": billing.pk},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["context"] is None
    assert "Grace" not in response.content.decode()


def test_creating_a_ticket_for_an_unseen_customer_is_audited(victim, teams, agent, other_agent):
    """Naming an existing customer by address makes it visible to the creator (its new
    ticket has no team); allowed, but the audit log says who did it and for whom."""
    from support.models import AuditLog

    body = {"subject": "Calling about my order", "customer": {"email": "grace@example.com"}}
    response = _client(other_agent).post("/api/tickets", body, format="json")
    assert response.status_code == 201
    [entry] = AuditLog.objects.filter(action="ticket.create_for_unseen_customer")
    assert (entry.actor, entry.object_id) == (other_agent, str(response.json()["id"]))
    assert entry.details["customer_id"] == victim.pk
    # The customer's own team agent (who could see it already) leaves no such entry, nor
    # does a new customer.
    assert _client(agent).post("/api/tickets", body, format="json").status_code == 201
    new = {"subject": "Hi", "customer": {"email": "someone.new@example.com"}}
    assert _client(other_agent).post("/api/tickets", new, format="json").status_code == 201
    assert AuditLog.objects.filter(action="ticket.create_for_unseen_customer").count() == 1


def _scored(customer: Customer, ticket: Ticket | None, key: str, days_ago: int, score: float):
    from tickets.context.models import Interaction

    Interaction.objects.create(
        customer=customer,
        ticket=ticket,
        source_key=key,
        channel="email",
        kind="message",
        summary=f"said on {key}",
        sentiment_score=score,
        occurred_at=timezone.now() - timedelta(days=days_ago, hours=1),
    )


HISTORY = {"open_tickets", "reopened_tickets", "low_csat", "frequent_contacts"}
HISTORY |= {"recent_unhappy_contact"}


def test_context_figures_are_over_the_tickets_the_agent_may_see(
    victim, teams, agent, other_agent, supervisor
):
    """Visible through a Shipping ticket: nothing of the context says the Billing ticket
    exists. Before, the counts were whole-customer "figures, not content" (2 tickets, 2
    open, the Billing ticket's rating and its messages in the sentiment strip's counts, the
    churn reasons' "2 open tickets"), so another team's ticket showed in them. The mood
    and risk scores stay the customer's (test_ticket_context_returns_...)."""
    _, shipping = teams
    hidden = Ticket.objects.get(customer=victim)
    mine = services.ticket_create(
        customer=victim, subject="Parcel lost", body="Where is it?", team=shipping
    )
    _scored(victim, mine, "mine", days_ago=2, score=0.5)
    _scored(victim, hidden, "hidden", days_ago=1, score=-0.9)
    services.ticket_update(ticket=hidden, status="resolved")
    context_services.feedback_submit(ticket=hidden, rating=1)
    whole = _client(supervisor).get(f"/api/customers/{victim.pk}/context").json()
    assert (whole["tickets"]["total"], whole["tickets"]["open"]) == (2, 1)
    assert (whole["csat"]["count"], whole["sentiment"]["scored_messages_90d"]) == (1, 2)
    assert {"low_csat", "open_tickets"} <= {r["code"] for r in whole["churn"]["reasons"]}
    assert "_viewer" not in whole
    urls = (f"/api/customers/{victim.pk}/context", f"/api/tickets/{mine.pk}/context")
    for url in urls:
        body = _client(other_agent).get(url).json()
        assert body["tickets"] == {
            "total": 1,
            "open": 1,
            "recent": [
                {
                    "id": mine.pk,
                    "number": mine.number,
                    "subject": "Parcel lost",
                    "status": "new",
                    "channel": "api",
                    "created_at": mine.created_at.isoformat(),
                }
            ],
        }
        assert [i["summary"] for i in body["interactions"]["recent"]] == ["said on mine"]
        assert body["csat"] == {"average": None, "count": 0, "last": None}
        sentiment = body["sentiment"]
        assert (sentiment["scored_messages_90d"], sentiment["last"]) == (1, 0.5)
        assert sum(w["count"] for w in sentiment["weekly"]) == 1
        assert [w["average"] for w in sentiment["weekly"] if w["count"]] == [0.5]
        # the customer's mood and risk: whole-customer scores
        assert sentiment["recent_average"] == whole["sentiment"]["recent_average"] == -0.2
        churn = body["churn"]
        assert (churn["score"], churn["level"]) == (
            whole["churn"]["score"],
            whole["churn"]["level"],
        )
        codes = [r["code"] for r in churn["reasons"]]
        assert "ticket_history" in codes
        assert not HISTORY & set(codes)
        assert sum(r["points"] for r in churn["reasons"]) == sum(
            r["points"] for r in whole["churn"]["reasons"]
        )
        text = str(body)
        for said in ("charged twice", "Refund for order", "said on hidden", hidden.number):
            assert said not in text
        assert "_viewer" not in body
        assert {k: v for k, v in body.items() if k not in ("ticket_id",)}.keys() == whole.keys()
    # the Billing agent sees the Billing ticket (and its rating), not the Shipping one
    billing_view = _client(agent).get(urls[0]).json()
    assert (billing_view["tickets"]["total"], billing_view["csat"]["count"]) == (1, 1)


def test_the_recent_tickets_are_the_agents_most_recent_whatever_is_newer(
    victim, teams, other_agent
):
    """The five most recent tickets the agent may see, not the customer's five most recent
    with the others left out (an empty list behind five newer Billing tickets)."""
    billing, shipping = teams
    mine = [
        services.ticket_create(customer=victim, subject=f"Mine {n}", body="x", team=shipping)
        for n in range(6)
    ]
    for n in range(5):
        services.ticket_create(customer=victim, subject=f"Theirs {n}", body="x", team=billing)
    body = _client(other_agent).get(f"/api/customers/{victim.pk}/context").json()
    assert [t["id"] for t in body["tickets"]["recent"]] == [t.pk for t in mine[::-1][:5]]
    assert (body["tickets"]["total"], body["tickets"]["open"]) == (6, 6)


def test_ticket_page_sidebar_and_context_panel_follow_the_rule(client, victim, teams, other_agent):
    _, shipping = teams
    mine = services.ticket_create(
        customer=victim, subject="Parcel lost", body="Where is it?", team=shipping
    )
    billing_ticket = Ticket.objects.get(customer=victim, team__slug="billing")
    client.force_login(other_agent)
    page = client.get(f"/tickets/{mine.number}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert billing_ticket.number not in html
    assert "Refund for order" not in html
    assert "charged twice" not in html
    assert "Grace Hopper" in html  # the customer of a visible ticket is visible
    assert client.get(f"/tickets/{billing_ticket.number}/").status_code == 404


def test_customer_selectors(victim, agent, other_agent, supervisor):
    assert selectors.customer_get_visible(victim.pk, user=agent) == victim
    assert selectors.customer_get_visible(str(victim.pk), user=supervisor) == victim
    with pytest.raises(NotFound):
        selectors.customer_get_visible(victim.pk, user=other_agent)
    assert list(Customer.objects.filter(selectors.customer_visibility_q(other_agent))) == []
    assert selectors.customer_visible_to(agent, customer_id=victim.pk)
    assert not selectors.customer_visible_to(other_agent, customer_id=victim.pk)
    lonely = Customer.objects.create(name="No tickets", email="none@example.com")
    assert not selectors.customer_visible_to(agent, customer_id=lonely.pk)
    assert selectors.customer_visible_to(supervisor, customer_id=lonely.pk)
