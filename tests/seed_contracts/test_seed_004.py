"""Seed 004 (production design): the ingestion API.

Quoted from the seed: "Endpoints: ``POST /tickets`` - Submit new ticket for routing;
``GET /tickets/{id}`` - Retrieve routing decision; ``GET /health`` - Health check endpoint";
"Authentication: API Key"; the ingestion logic "3. Generate correlation ID ... 5. Return
202 Accepted"; the ``TicketReceived`` detail ``{"ticket_id", "customer_id", "subject",
"description", "timestamp", ...}`` is what a ticket submission carries."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from routing.models import RoutingDecision
from routing.services import routing_decide
from support.models import OutboxEvent
from support.services import api_key_create
from tickets import services as ticket_services
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


def test_post_tickets_answers_202_with_a_correlation_id(
    key_client: APIClient, customer: Customer, agent: Any
) -> None:
    Ticket.objects.create(customer=customer, subject="Earlier ticket")  # the agent sees it
    response = key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-1001",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "No connection since this morning, error ERR-504.",
            "timestamp": "2025-01-01T12:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    ticket = Ticket.objects.get(origin_platform_id="TKT-1001")
    assert body["ticket_id"] == "TKT-1001"  # the caller's id, as in seed 004's table
    assert body["id"] == ticket.pk
    assert body["correlation_id"] == str(ticket.correlation_id)
    assert body["external_ticket_id"] == "TKT-1001"
    assert body["customer_context"]["customer"]["id"] == customer.pk
    assert "kb_suggestions" in body


def test_post_tickets_refuses_a_customer_id_it_cannot_use(key_client: APIClient) -> None:
    response = key_client.post(
        "/tickets", {"customer_id": "CUST-1", "subject": "x", "description": "y"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_get_ticket_retrieves_the_routing_decision(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    key_client = supervisor_key_client  # routing may move the ticket to any team
    created = key_client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "Refund", "description": "Charged twice"},
        format="json",
    ).json()
    assert created["ticket_id"] == str(created["id"])  # seed 004: a string
    ticket = Ticket.objects.get(pk=created["id"])
    RoutingDecision.objects.filter(ticket=ticket).delete()  # eager Celery routed it
    pending = key_client.get(f"/tickets/{ticket.pk}")
    assert pending.status_code == 200
    assert pending.json()["routing_status"] == "pending"
    routing_decide(ticket_id=ticket.pk)
    body = key_client.get(f"/tickets/{ticket.pk}").json()
    assert body["routing_status"] == "decided"
    for field in (
        "ticket_id",
        "timestamp",
        "customer_id",
        "assigned_team",
        "priority_level",
        "confidence_score",
        "issue_classification",
        "reasoning",
        "requires_manual_review",
        "processing_time_ms",
        "tool_calls",
        "correlation_id",
        "sync_status",
        "created_at",
    ):
        assert field in body, field
    # Seed 004's table: "ticket_id": "string (partition key)", "customer_id": "string".
    # Submitted without a ticket_id: the internal id, as a string.
    assert (body["ticket_id"], body["id"]) == (str(ticket.pk), ticket.pk)
    assert body["customer_id"] == str(customer.pk)
    assert pending.json()["customer_id"] == str(customer.pk)
    assert pending.json()["ticket_id"] == str(ticket.pk)


def test_decision_row_has_a_named_sync_status_and_a_ttl(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    """Seed 004's table: ``"sync_status": "string"  // pending, success, failed`` and
    ``"ttl": "number (Unix timestamp)"`` (TTL: 90 days). Before: ``""`` with no ticketing
    system configured, and no ``ttl``."""
    settings.TICKETING_SYSTEM_URL = ""
    created = _submit(supervisor_key_client, customer, "TKT-11").json()
    routing_decide(ticket_id=created["id"])
    decision = RoutingDecision.objects.get(ticket_id=created["id"])
    body = supervisor_key_client.get("/tickets/TKT-11").json()
    assert body["sync_status"] == "not_configured"
    assert body["ttl"] == int(decision.expires_at.timestamp())
    assert body["ttl"] > body["timestamp"]
    RoutingDecision.objects.filter(pk=decision.pk).update(sync_status="failed")
    assert supervisor_key_client.get("/tickets/TKT-11").json()["sync_status"] == "failed"


def _submit(client: APIClient, customer: Customer, ticket_id: str) -> Any:
    return client.post(
        "/tickets",
        {
            "ticket_id": ticket_id,
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "No connection since this morning.",
        },
        format="json",
    )


def test_get_ticket_finds_the_ticket_by_the_callers_ticket_id(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    created = _submit(supervisor_key_client, customer, "TKT-1001")
    assert created.status_code == 202, created.content
    ticket = Ticket.objects.get(pk=created.json()["id"])
    routing_decide(ticket_id=ticket.pk)
    body = supervisor_key_client.get("/tickets/TKT-1001").json()
    assert body["ticket_id"] == "TKT-1001"
    assert body["id"] == ticket.pk
    assert body["routing_status"] == "decided"
    assert body["correlation_id"] == str(ticket.correlation_id)
    classification = body["issue_classification"]
    assert classification["primary_category"] == classification["category"]  # seed's name
    # The internal id and number still answer (here no caller's id shadows them).
    assert supervisor_key_client.get(f"/tickets/{ticket.number}").json()["id"] == ticket.pk
    assert supervisor_key_client.get(f"/tickets/{ticket.pk}").json()["id"] == ticket.pk


def test_a_numeric_ticket_id_is_the_callers_not_another_internal_ticket(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    other = Ticket.objects.create(customer=customer, subject="Someone else's ticket")
    created = _submit(supervisor_key_client, customer, str(other.pk)).json()
    assert created["id"] != other.pk
    body = supervisor_key_client.get(f"/tickets/{other.pk}").json()
    assert body["ticket_id"] == str(other.pk)
    assert body["id"] == created["id"]
    # The other ticket stays reachable by its number.
    assert supervisor_key_client.get(f"/tickets/{other.number}").json()["id"] == other.pk


def test_a_repeated_post_answers_the_first_ticket_and_creates_nothing(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    first = _submit(supervisor_key_client, customer, "TKT-7")
    assert first.status_code == 202
    routing_decide(ticket_id=first.json()["id"])
    events = OutboxEvent.objects.count()
    again = _submit(supervisor_key_client, customer, "TKT-7")
    assert OutboxEvent.objects.count() == events  # no ticket.created: nothing routed again
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["ticket_id"] == "TKT-7"
    assert Ticket.objects.count() == 1
    assert RoutingDecision.objects.count() == 1


def test_ticket_ids_are_per_caller(
    key_client: APIClient, supervisor_key_client: APIClient, customer: Customer, agent: Any
) -> None:
    Ticket.objects.create(customer=customer, subject="Earlier")  # the agent sees the customer
    mine = _submit(supervisor_key_client, customer, "TKT-9").json()
    theirs = _submit(key_client, customer, "TKT-9")
    assert theirs.status_code == 202, theirs.content
    assert theirs.json()["id"] != mine["id"]
    assert Ticket.objects.filter(origin_platform_id="TKT-9").count() == 2


def test_the_database_refuses_a_second_ticket_for_a_callers_id(
    customer: Customer, supervisor: Any
) -> None:
    """What stops two concurrent POSTs that both passed the first look-up."""
    first = ticket_services.ticket_create(
        customer=customer, subject="a", origin_platform_id="TKT-3", origin_caller=supervisor
    )
    with pytest.raises(ticket_services.TicketAlreadySubmitted) as repeat:
        ticket_services.ticket_create(
            customer=customer, subject="b", origin_platform_id="TKT-3", origin_caller=supervisor
        )
    assert repeat.value.ticket.pk == first.pk
    assert Ticket.objects.count() == 1


def test_a_callers_ticket_keeps_the_visibility_rule(
    key_client: APIClient, customer: Customer, agent: Any, other_agent: Any
) -> None:
    Ticket.objects.create(customer=customer, subject="Earlier")  # the agent sees the customer
    created = _submit(key_client, customer, "TKT-5")
    assert created.status_code == 202, created.content
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    Ticket.objects.filter(pk=created.json()["id"]).update(team=elsewhere, assignee=None)
    assert key_client.get("/tickets/TKT-5").status_code == 404
    again = _submit(key_client, customer, "TKT-5")
    assert again.status_code == 409
    assert Ticket.objects.filter(origin_platform_id="TKT-5").count() == 1
    # Another caller's id is not this caller's.
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name="other", user=other_agent)[1])
    assert client.get("/tickets/TKT-5").status_code == 404


def test_health(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("support.health.check_celery", lambda: {"status": "ok", "workers": 1})
    assert client.get("/health").status_code == 200


def test_extract_entities_is_narrower_than_the_seeds_regexes() -> None:
    """Seed 004's ``ACC-\\d+`` and ``[A-Z]+-\\d+`` are deliberately not copied
    (docs/routing.md, "extract_entities is deliberately narrower"): an account number has
    3-12 digits and is never also an error code."""
    from routing.tools import extract_entities

    found = extract_entities("Account ACC-12 fails with ERR-504 on ACC-123456, see TKT-1001")
    assert found["account_numbers"] == ["ACC-123456"]
    assert found["error_codes"] == ["ERR-504", "TKT-1001"]
