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
from tickets.models import Customer, Ticket

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
    assert body["ticket_id"] == ticket.pk
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
    ticket = Ticket.objects.get(pk=created["ticket_id"])
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
    assert body["ticket_id"] == ticket.pk
    assert body["customer_id"] == customer.pk


def test_health(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("support.health.check_celery", lambda: {"status": "ok", "workers": 1})
    assert client.get("/health").status_code == 200
