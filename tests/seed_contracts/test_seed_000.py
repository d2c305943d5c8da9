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

from tickets.context.models import CsatFeedback
from tickets.context.services import feedback_token_make
from tickets.models import Customer, Team, Ticket, TicketStatus

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
    assert (body["ticket_id"], body["id"]) == (str(ticket.pk), ticket.pk)  # seed 004: strings
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
    Ticket.objects.filter(pk=created["id"]).update(status=TicketStatus.RESOLVED)
    response = key_client.post(
        f"/tickets/{created['ticket_id']}/feedback",
        {"rating": 5, "comment": "Quick"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "ticket_id": created["ticket_id"],
        "id": created["id"],
        "rating": 5,
        "comment": "Quick",
        "created": True,
    }


def _submit(client: APIClient, customer: Customer, ticket_id: str) -> dict[str, Any]:
    """Seed 004's ``POST /tickets`` with the caller's own ``ticket_id``."""
    response = client.post(
        "/tickets",
        {"ticket_id": ticket_id, "customer_id": str(customer.pk), "subject": "Refund"},
        format="json",
    )
    assert response.status_code == 202, response.content
    return dict(response.json())


def test_context_and_feedback_take_the_ticket_id_post_tickets_answered(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """The ``ticket_id`` ``POST /tickets`` answers names the ticket on the sibling routes
    too, as on ``GET /tickets/{id}`` (before: 404 for ``TKT-77``)."""
    created = _submit(supervisor_key_client, customer, "TKT-77")
    assert created["ticket_id"] == "TKT-77"
    assert supervisor_key_client.get("/tickets/TKT-77").json()["id"] == created["id"]
    context = supervisor_key_client.get("/tickets/TKT-77/context")
    assert context.status_code == 200, context.content
    assert (context.json()["ticket_id"], context.json()["id"]) == ("TKT-77", created["id"])
    assert context.json()["customer"]["email"] == customer.email
    Ticket.objects.filter(pk=created["id"]).update(status=TicketStatus.RESOLVED)
    feedback = supervisor_key_client.post("/tickets/TKT-77/feedback", {"rating": 5}, format="json")
    assert feedback.status_code == 201, feedback.content
    assert (feedback.json()["ticket_id"], feedback.json()["id"]) == ("TKT-77", created["id"])
    assert CsatFeedback.objects.get().ticket_id == created["id"]


def test_a_numeric_ticket_id_names_the_callers_ticket_not_another_internal_one(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """Before: ``/tickets/{id}/context`` answered the ticket whose internal id the caller's
    own id happened to be (another customer's context), and feedback was written on it."""
    stranger = Customer.objects.create(name="Someone Else", email="else@example.com")
    other = Ticket.objects.create(
        customer=stranger, subject="Someone else's", status=TicketStatus.RESOLVED
    )
    created = _submit(supervisor_key_client, customer, str(other.pk))
    Ticket.objects.filter(pk=created["id"]).update(status=TicketStatus.RESOLVED)
    context = supervisor_key_client.get(f"/tickets/{other.pk}/context").json()
    assert context["id"] == created["id"]
    assert context["customer"]["email"] == customer.email
    feedback = supervisor_key_client.post(
        f"/tickets/{other.pk}/feedback", {"rating": 4}, format="json"
    )
    assert feedback.status_code == 201, feedback.content
    assert list(CsatFeedback.objects.values_list("ticket_id", flat=True)) == [created["id"]]
    # The other ticket stays reachable by its number, and the product's own routes keep
    # reading {id} as the internal id.
    by_number = supervisor_key_client.get(f"/tickets/{other.number}/context").json()
    assert by_number["id"] == other.pk
    product = supervisor_key_client.get(f"/api/tickets/{other.pk}/context").json()
    assert (product["ticket_id"], product["customer"]["email"]) == (other.pk, stranger.email)


def test_context_of_a_callers_ticket_keeps_the_visibility_rule(
    key_client: APIClient, customer: Customer
) -> None:
    Ticket.objects.create(customer=customer, subject="Earlier")  # the agent sees the customer
    created = _submit(key_client, customer, "TKT-8")
    assert key_client.get("/tickets/TKT-8/context").status_code == 200
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    Ticket.objects.filter(pk=created["id"]).update(team=elsewhere, assignee=None)
    assert key_client.get("/tickets/TKT-8/context").status_code == 404
    Ticket.objects.filter(pk=created["id"]).update(status=TicketStatus.RESOLVED)
    refused = key_client.post("/tickets/TKT-8/feedback", {"rating": 1}, format="json")
    assert refused.status_code == 404
    assert not CsatFeedback.objects.exists()


def test_feedback_link_on_the_seed_route_names_the_ticket_by_its_internal_id(
    api_client: APIClient, customer: Customer
) -> None:
    ticket = Ticket.objects.create(customer=customer, subject="x", status=TicketStatus.RESOLVED)
    token = feedback_token_make(ticket)
    response = api_client.post(
        f"/tickets/{ticket.pk}/feedback", {"rating": 3, "token": token}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["id"] == ticket.pk
    assert CsatFeedback.objects.get().ticket_id == ticket.pk


def test_kb_sync(supervisor_key_client: APIClient, kb: Any, tmp_path: Any) -> None:
    """``/kb/sync`` → ``start_ingestion_job`` → "Sync started JSON", for a source that is
    read from somewhere (a folder here, an S3 bucket as the seed's); an upload source has
    nothing to re-read: a 400 saying so (docs/knowledge.md), no job."""
    from knowledge.models import IngestionJob, KnowledgeSource
    from knowledge.services import source_get_or_create

    source_get_or_create(name="docs", kind=KnowledgeSource.Kind.FOLDER, path=str(tmp_path))
    response = supervisor_key_client.post("/kb/sync", {"source": "docs"}, format="json")
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"job_id", "status"}
    jobs = IngestionJob.objects.count()
    response = supervisor_key_client.post("/kb/sync", {"source": "help"}, format="json")
    assert response.status_code == 400
    assert "nothing to re-read" in response.json()["error"]["message"]
    assert IngestionJob.objects.count() == jobs


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


def test_ticket_id_and_a_different_origin_platform_id_are_refused_not_one_dropped(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """Before: ``ticket_id`` was silently dropped for ``origin_platform_id``, so the id the
    caller sent answered 404 afterwards."""
    body = {"customer_id": str(customer.pk), "subject": "Refund", "ticket_id": "TKT-5"}
    response = supervisor_key_client.post(
        "/tickets", {**body, "origin_platform_id": "other-5"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "ticket_id" in response.content.decode()
    assert not Ticket.objects.exists()
    same = supervisor_key_client.post(
        "/tickets", {**body, "origin_platform_id": "TKT-5"}, format="json"
    )
    assert same.status_code == 202, same.content
    assert supervisor_key_client.get("/tickets/TKT-5").status_code == 200
