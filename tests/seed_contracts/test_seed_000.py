"""Seed 000 (architecture notes, phase 1): the Lambda router's routes.

Quoted from the seed: ``Routes: /health /tickets /tickets/{id}/context
/tickets/{id}/feedback /kb/sync``; "ticket ingestion returns status + customer context +
KB suggestions; context endpoint returns customer snapshot"; "Manual sync is available via
the ``/kb/sync`` endpoint". The seed gives no request bodies: these send the fields its
components name (subject, description, the customer)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tickets.models import Ticket, TicketStatus

pytestmark = pytest.mark.django_db


def test_health(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/health`` → ``health_check.py`` → "JSON 200"."""
    monkeypatch.setattr("support.health.check_celery", lambda: {"status": "ok", "workers": 1})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_post_tickets_returns_status_customer_context_and_kb_suggestions(
    key_client: APIClient, kb: Any
) -> None:
    """The single call: "ticket ingestion returns status + customer context + KB
    suggestions" (``TicketResponse JSON``)."""
    response = key_client.post(
        "/tickets",
        {
            "subject": "Cannot login",
            "description": "I forgot my password and cannot sign in.",
            "customer": {"email": "user@example.com", "name": "Pat"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    ticket = Ticket.objects.get()
    assert body["ticket_id"] == ticket.pk
    assert body["status"] == TicketStatus.NEW
    assert body["customer_context"]["customer"]["email"] == "user@example.com"
    assert body["kb_suggestions"][0]["document"]["external_id"] == "login"


def test_get_ticket_context(key_client: APIClient) -> None:
    """``/tickets/{id}/context`` → ``CustomerContext JSON`` (the customer snapshot)."""
    created = key_client.post(
        "/tickets",
        {"subject": "Order late", "customer": {"email": "ada@example.com", "name": "Ada"}},
        format="json",
    ).json()
    response = key_client.get(f"/tickets/{created['ticket_id']}/context")
    assert response.status_code == 200
    body = response.json()
    assert body["ticket_id"] == created["ticket_id"]
    assert body["customer"]["email"] == "ada@example.com"
    assert {"orders", "interactions", "churn"} <= set(body)


def test_post_ticket_feedback(key_client: APIClient) -> None:
    """``/tickets/{id}/feedback``."""
    created = key_client.post(
        "/tickets",
        {"subject": "Refund", "customer": {"email": "ada@example.com"}},
        format="json",
    ).json()
    Ticket.objects.filter(pk=created["ticket_id"]).update(status=TicketStatus.RESOLVED)
    response = key_client.post(
        f"/tickets/{created['ticket_id']}/feedback",
        {"rating": 5, "comment": "Quick"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "ticket_id": created["ticket_id"],
        "rating": 5,
        "comment": "Quick",
        "created": True,
    }


def test_kb_sync(supervisor_key_client: APIClient, kb: Any) -> None:
    """``/kb/sync`` → ``start_ingestion_job`` → "Sync started JSON"."""
    response = supervisor_key_client.post("/kb/sync", {"source": "help"}, format="json")
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"job_id", "status"}


def test_seed_paths_need_the_usual_authentication(api_client: APIClient) -> None:
    assert api_client.post("/tickets", {"subject": "x"}, format="json").status_code == 401
    assert api_client.get("/tickets/1/context").status_code == 401


def test_seed_paths_are_off_with_the_setting(key_client: APIClient, settings: Any) -> None:
    settings.SEED_CONTRACTS_ENABLED = False
    response = key_client.post(
        "/tickets", {"subject": "x", "customer": {"email": "a@example.com"}}, format="json"
    )
    assert response.status_code == 404
    assert Ticket.objects.count() == 0


def test_api_tickets_include_suggestions(key_client: APIClient, kb: Any) -> None:
    """``POST /api/tickets?include=context,suggestions`` (docs/customer-context.md):
    answered 400 while nothing registered the ``suggestions`` extra."""
    response = key_client.post(
        "/api/tickets?include=context,suggestions",
        {
            "subject": "Cannot login",
            "description": "I forgot my password and cannot sign in.",
            "customer": {"email": "user@example.com"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["suggestions"][0]["document"]["external_id"] == "login"
    assert body["context"]["customer"]["email"] == "user@example.com"
