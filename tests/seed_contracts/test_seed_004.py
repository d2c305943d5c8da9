"""Seed 004 (production design): the ingestion API.

Quoted from the seed: "Endpoints: ``POST /tickets`` - Submit new ticket for routing;
``GET /tickets/{id}`` - Retrieve routing decision; ``GET /health`` - Health check endpoint";
"Authentication: API Key"; the ingestion logic "3. Generate correlation ID ... 5. Return
202 Accepted"; the ``TicketReceived`` detail ``{"ticket_id", "customer_id", "subject",
"description", "timestamp", ...}`` is what a ticket submission carries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from events_out.selectors import ticket_received_detail
from routing import customer_db
from routing.models import RoutingDecision, RoutingFailure
from routing.services import routing_decide, routing_decision_override, routing_decision_purge
from support.models import AuditLog, OutboxEvent
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


def test_post_tickets_takes_the_ticketing_systems_own_customer_id(
    key_client: APIClient,
) -> None:
    """Seed 004's ``"customer_id": "string"`` is the ticketing system's id (seed 001:
    ``cust_xyz``): the first ticket creates the customer with that ``external_id``, the
    next finds it, and ``GET /tickets/{id}`` answers the id that was posted. Until
    2026-12-07 anything but this platform's digits was a 400."""
    first = key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-1",
            "customer_id": "CUST-42",
            "subject": "Internet down",
            "description": "No connection since this morning.",
        },
        format="json",
    )
    assert first.status_code == 202, first.content
    customer = Customer.objects.get(external_id="CUST-42")
    assert (customer.name, customer.email) == ("CUST-42", "")
    assert Ticket.objects.get(origin_platform_id="TKT-1").customer == customer
    second = key_client.post(
        "/tickets",
        {"ticket_id": "TKT-2", "customer_id": "CUST-42", "subject": "Still down"},
        format="json",
    )
    assert second.status_code == 202, second.content
    assert Ticket.objects.get(origin_platform_id="TKT-2").customer == customer
    assert Customer.objects.count() == 1
    for ref in ("TKT-1", "TKT-2"):
        row = key_client.get(f"/tickets/{ref}").json()
        assert row["customer_id"] == "CUST-42"
    # the ticket API shows it, read-only, beside the internal id
    shown = key_client.get(f"/api/tickets/{second.json()['id']}").json()["customer"]
    assert (shown["external_id"], shown["internal_id"]) == ("CUST-42", str(customer.pk))


def test_post_tickets_digits_stay_this_platforms_customer_id(
    key_client: APIClient, customer: Customer
) -> None:
    """A JSON integer or a string of digits is still ``Customer.pk``, even when another
    customer's own id is those digits; an unknown one is the 400 it was, creating
    nobody."""
    Ticket.objects.create(customer=customer, subject="Earlier ticket")  # the agent sees it
    other = Customer.objects.create(external_id=str(customer.pk))
    Ticket.objects.create(customer=other, subject="Theirs")
    for value in (str(customer.pk), customer.pk):
        response = key_client.post(
            "/tickets", {"customer_id": value, "subject": "Refund"}, format="json"
        )
        assert response.status_code == 202, response.content
        assert Ticket.objects.get(pk=response.json()["id"]).customer == customer
        row = key_client.get(f"/tickets/{response.json()['id']}").json()
        assert row["customer_id"] == str(customer.pk)  # no external id: the internal one
    unknown = key_client.post("/tickets", {"customer_id": "999999", "subject": "x"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"] == {"customer_id": ["Unknown customer."]}
    assert Customer.objects.count() == 2

    # ``other``'s own id reads as a platform id: its rows answer the internal id, which
    # names ``other`` when posted back (its own id named ``customer``, review 2026-12-07)
    seen = customer.tickets.first()
    assert seen is not None
    Ticket.objects.filter(customer=other).update(team=seen.team)
    posted = key_client.post(
        "/tickets", {"customer_id": other.pk, "subject": "Again"}, format="json"
    )
    assert posted.status_code == 202, posted.content
    row = key_client.get(f"/tickets/{posted.json()['id']}").json()
    assert row["customer_id"] == str(other.pk)
    again = key_client.post(
        "/tickets", {"customer_id": row["customer_id"], "subject": "And again"}, format="json"
    )
    assert Ticket.objects.get(pk=again.json()["id"]).customer == other


def test_an_existing_own_customer_id_the_caller_may_not_see_answers_like_an_unknown_id(
    key_client: APIClient, supervisor_key_client: APIClient
) -> None:
    """The customer rule of the numeric id, whichever way the customer is named: another
    team's customer answers exactly what an unknown id does, so the answer does not say
    that it exists or whose it is; nothing is created."""
    billing = Team.objects.create(name="Billing", slug="billing")
    theirs = Customer.objects.create(name="Grace", external_id="CUST-9")
    Ticket.objects.create(customer=theirs, subject="Invoice", team=billing)
    tickets_before = Ticket.objects.count()

    def refusal(customer_id: str) -> dict[str, Any]:
        response = key_client.post(
            "/tickets",
            {"ticket_id": f"TKT-{customer_id}", "customer_id": customer_id, "subject": "x"},
            format="json",
        )
        assert response.status_code == 400, response.content
        return response.json()

    own, numeric, unknown = refusal("CUST-9"), refusal(str(theirs.pk)), refusal("999999")
    assert own == {
        **numeric,
        "error": {**numeric["error"], "message": "customer_id: no customer CUST-9."},
    }
    assert numeric["error"] == {
        **unknown["error"],
        "message": f"customer_id: no customer {theirs.pk}.",
    }
    assert (Ticket.objects.count(), Customer.objects.count()) == (tickets_before, 1)
    # a supervisor's key sees every customer: the ticket goes to Grace
    allowed = supervisor_key_client.post(
        "/tickets", {"customer_id": "CUST-9", "subject": "x"}, format="json"
    )
    assert allowed.status_code == 202, allowed.content
    assert Ticket.objects.get(pk=allowed.json()["id"]).customer == theirs


def test_a_caller_may_name_again_the_customer_of_a_ticket_it_submitted(
    key_client: APIClient, other_agent: Any
) -> None:
    """Routing moves the first ticket to a team the key's user is not in, so the customer
    is no longer visible to it; the ticketing system's next ticket for that customer is
    still taken (it submitted the first one itself). Another agent's key, which submitted
    none, still gets the unknown-customer answer."""
    first = key_client.post(
        "/tickets", {"customer_id": "CUST-50", "subject": "Router broken"}, format="json"
    )
    assert first.status_code == 202, first.content
    billing = Team.objects.create(name="Billing", slug="billing")
    Ticket.objects.filter(pk=first.json()["id"]).update(team=billing)

    again = key_client.post(
        "/tickets", {"customer_id": "CUST-50", "subject": "Still broken"}, format="json"
    )

    assert again.status_code == 202, again.content
    customer = Customer.objects.get(external_id="CUST-50")
    assert Ticket.objects.get(pk=again.json()["id"]).customer == customer
    # a customer the caller could not see, named again: audited as one named by address is
    audited = AuditLog.objects.filter(action="ticket.create_for_unseen_customer")
    assert [a.details["customer_id"] for a in audited] == [customer.pk]
    Ticket.objects.filter(customer=customer).update(team=billing)  # routed there too
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=api_key_create(name="other", user=other_agent)[1])
    refused = other.post("/tickets", {"customer_id": "CUST-50", "subject": "x"}, format="json")
    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["details"] == {"customer_id": ["Unknown customer."]}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("   ", "Empty"),
        ("C" * 256, "Longer than 255 characters"),
        ("CUST\n42", "control or other unprintable character"),
        ("CUST\u200b42", "control or other unprintable character"),
        (4.5, "your own customer id (any other string)"),
        (True, "your own customer id (any other string)"),
    ],
)
def test_a_bad_own_customer_id_is_a_400_naming_it(
    key_client: APIClient, value: Any, says: str
) -> None:
    response = key_client.post(
        "/tickets", {"customer_id": value, "subject": "x", "description": "y"}, format="json"
    )
    assert response.status_code == 400, response.content
    [message] = response.json()["error"]["details"]["customer_id"]
    assert says in message
    assert (Customer.objects.count(), Ticket.objects.count()) == (0, 0)


def test_an_own_customer_id_is_stripped_and_may_have_255_characters(
    key_client: APIClient,
) -> None:
    for value in ("  cust_xyz  ", "C" * 255):
        response = key_client.post(
            "/tickets", {"customer_id": value, "subject": "x"}, format="json"
        )
        assert response.status_code == 202, response.content
        assert Customer.objects.filter(external_id=value.strip()).exists()


def test_get_ticket_retrieves_the_routing_decision(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    settings.ROUTING_ENABLED = True
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
    assert pending.json()["routing_status_reason"] == "Waiting for the routing decision."
    routing_decide(ticket_id=ticket.pk)
    body = key_client.get(f"/tickets/{ticket.pk}").json()
    # one shape whatever the status: the keys a decision fills are there, null, before it
    assert set(body) == set(pending.json())
    assert all(pending.json()[key] is None for key in ("assigned_team", "timestamp", "ttl"))
    assert body["routing_status"] == "decided"
    assert body["routing_status_reason"] is None
    assert "withheld" not in body
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


def test_confidence_score_is_the_measured_confidence_not_the_models(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    """Seed 004's ``"confidence_score": "number"``, which its alarms read ("Average
    confidence < 60%"): the decision's calibrated confidence (the classifier's probability
    of the decision's category), for a model provider's decision too. The figure the model
    stated is not this field's (before, it was) and the row keeps the seed's shape."""
    settings.TICKETING_SYSTEM_URL = ""
    created = _submit(supervisor_key_client, customer, "TKT-12").json()
    routing_decide(ticket_id=created["id"])
    RoutingDecision.objects.filter(ticket_id=created["id"]).update(
        provider="bedrock", confidence=0.35, model_stated_confidence=0.9
    )
    body = supervisor_key_client.get("/tickets/TKT-12").json()
    assert body["confidence_score"] == 0.35
    assert "model_stated_confidence" not in body


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


def test_a_used_ticket_id_with_another_description_is_a_409_not_the_first_ticket(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """A second ticket sent under an id already used (the ticketing system reused or
    mis-numbered it) was answered 200 with the first ticket: its text went nowhere and the
    caller believed it delivered."""
    first = _submit(supervisor_key_client, customer, "TKT-8")
    assert first.status_code == 202
    other = supervisor_key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-8",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "A different problem: the invoice is wrong.",
        },
        format="json",
    )
    assert other.status_code == 409, other.content
    assert "already submitted with another description" in other.content.decode()
    assert Ticket.objects.count() == 1
    # the same submission again (a retry, even with unicode and lines) is still the first
    text = {"subject": "Café ☕", "description": "Line one\nLine two — naïve 😀"}
    made = supervisor_key_client.post(
        "/tickets", {"ticket_id": "TKT-U", "customer_id": str(customer.pk), **text}, format="json"
    )
    again = supervisor_key_client.post(
        "/tickets", {"ticket_id": "TKT-U", "customer_id": str(customer.pk), **text}, format="json"
    )
    assert (made.status_code, again.status_code) == (202, 200), again.content
    assert again.json()["id"] == made.json()["id"]


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


def test_the_submitter_still_reads_the_decision_once_routing_moved_the_ticket(
    key_client: APIClient, customer: Customer, agent: Any, other_agent: Any
) -> None:
    """An agent's key submits; routing moves the ticket to a team the agent is not in.
    Before: ``GET /tickets/TKT-5`` answered 404 from then on, so a ticketing system whose
    key is not a supervisor's never saw its routing decision. The submitter reads the
    decision row (not the reasoning and tool trace, which may quote what it did not send);
    everything that shows the conversation keeps the visibility rule."""
    Ticket.objects.create(customer=customer, subject="Earlier")  # the agent sees the customer
    created = _submit(key_client, customer, "TKT-5")
    assert created.status_code == 202, created.content
    ticket = Ticket.objects.get(pk=created.json()["id"])
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    decision = routing_decide(ticket_id=ticket.pk)
    RoutingDecision.objects.filter(pk=decision.pk).update(team=elsewhere, team_slug="elsewhere")
    Ticket.objects.filter(pk=ticket.pk).update(team=elsewhere, assignee=None)

    body = key_client.get("/tickets/TKT-5").json()
    assert body["ticket_id"] == "TKT-5"
    assert body["id"] == ticket.pk
    assert body["routing_status"] == "decided"
    assert body["assigned_team"] == "elsewhere"
    assert body["priority_level"] == decision.priority
    assert body["confidence_score"] == decision.confidence
    assert body["correlation_id"] == str(decision.correlation_id)
    assert body["customer_id"] == str(customer.pk)
    assert (body["reasoning"], body["tool_calls"], body["issue_classification"]) == (
        None,
        None,
        None,
    )
    assert body["withheld"] == [
        "issue_classification",
        "reasoning",
        "tool_calls",
        "current_team",
        "current_priority",
        "verdict",
    ]
    # nor where people moved the ticket since (the workbench's state, not the router's row)
    assert (body["current_team"], body["current_priority"], body["verdict"]) == (None, None, None)
    # by its internal id too (the submitter's own ticket)
    assert key_client.get(f"/tickets/{ticket.pk}").json()["id"] == ticket.pk
    # what shows the conversation or the customer keeps the rule
    assert key_client.get("/tickets/TKT-5/context").status_code == 404
    assert key_client.get(f"/api/tickets/{ticket.pk}").status_code == 404
    again = _submit(key_client, customer, "TKT-5")
    assert again.status_code == 409
    assert Ticket.objects.filter(origin_platform_id="TKT-5").count() == 1
    # Another caller's id is not this caller's, nor its ticket.
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name="other", user=other_agent)[1])
    assert client.get("/tickets/TKT-5").status_code == 404
    assert client.get(f"/tickets/{ticket.pk}").status_code == 404


def test_a_ticket_submitted_by_someone_else_keeps_the_visibility_rule(
    key_client: APIClient, supervisor_key_client: APIClient, customer: Customer, agent: Any
) -> None:
    """Only the submitter reads a ticket it may not see: the agent's key gets 404 for a
    supervisor's submission in another team, by its id or number."""
    created = _submit(supervisor_key_client, customer, "TKT-6").json()
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    Ticket.objects.filter(pk=created["id"]).update(team=elsewhere)
    assert key_client.get(f"/tickets/{created['id']}").status_code == 404
    assert key_client.get(f"/tickets/{created['number']}").status_code == 404
    assert key_client.get("/tickets/TKT-6").status_code == 404


def _pending(client: APIClient, customer: Customer, ticket_id: str) -> Ticket:
    created = _submit(client, customer, ticket_id)
    assert created.status_code == 202, created.content
    RoutingDecision.objects.filter(ticket_id=created.json()["id"]).delete()
    return Ticket.objects.get(pk=created.json()["id"])


def test_routing_status_says_failed_for_a_permanent_failure(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    """Before: ``pending`` for a ticket the sweep will never route again."""
    settings.ROUTING_ENABLED = True
    ticket = _pending(supervisor_key_client, customer, "TKT-20")
    RoutingFailure.objects.create(
        ticket=ticket, permanent=True, attempts=1, error="InvalidInput: no text to route."
    )
    body = supervisor_key_client.get("/tickets/TKT-20").json()
    assert body["routing_status"] == "failed"
    assert "InvalidInput: no text to route." in body["routing_status_reason"]
    assert "failed for good" in body["routing_status_reason"]


def test_routing_status_stays_pending_after_a_passing_failure(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    settings.ROUTING_ENABLED = True
    ticket = _pending(supervisor_key_client, customer, "TKT-21")
    RoutingFailure.objects.create(ticket=ticket, permanent=False, attempts=2, error="Timeout")
    body = supervisor_key_client.get("/tickets/TKT-21").json()
    assert body["routing_status"] == "pending"
    assert body["routing_status_reason"].startswith("Routing failed 2 time(s)")


def test_routing_status_says_disabled_while_routing_is_off(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    settings.ROUTING_ENABLED = False
    _pending(supervisor_key_client, customer, "TKT-22")
    body = supervisor_key_client.get("/tickets/TKT-22").json()
    assert body["routing_status"] == "disabled"
    assert "ROUTING_ENABLED" in body["routing_status_reason"]


def test_routing_status_says_expired_once_the_decision_was_purged(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    """The 90-day TTL: the purge deleted the decision; ``pending`` said one was coming."""
    settings.ROUTING_ENABLED = True
    created = _submit(supervisor_key_client, customer, "TKT-23").json()
    routing_decide(ticket_id=created["id"])
    old = timezone.now() - timedelta(days=settings.ROUTING_DECISION_RETENTION_DAYS + 1)
    Ticket.objects.filter(pk=created["id"]).update(created_at=old)
    RoutingDecision.objects.filter(ticket_id=created["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert routing_decision_purge() == 1
    body = supervisor_key_client.get("/tickets/TKT-23").json()
    assert body["routing_status"] == "expired"
    assert "deleted 90 days after" in body["routing_status_reason"]


def test_routing_status_says_not_routed_past_the_sweeps_look_back(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    settings.ROUTING_ENABLED = True
    ticket = _pending(supervisor_key_client, customer, "TKT-24")
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(days=2))
    body = supervisor_key_client.get("/tickets/TKT-24").json()
    assert body["routing_status"] == "not_routed"
    assert "ROUTING_SWEEP_LOOKBACK_SECONDS" in body["routing_status_reason"]


def test_post_tickets_names_unknown_fields(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """Before: a misspelt field was dropped and the ticket created without it."""
    response = supervisor_key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-30",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "descripton": "No connection since this morning.",
            "sevrity": "high",
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert sorted(details) == ["descripton", "sevrity"]
    assert details["descripton"][0].startswith("Unknown field; this endpoint takes ")
    assert "description" in details["descripton"][0]
    assert not Ticket.objects.exists()
    # with another error, both are named
    response = supervisor_key_client.post(
        "/tickets", {"customer_id": str(customer.pk), "sevrity": "high"}, format="json"
    )
    assert response.status_code == 400
    assert sorted(response.json()["error"]["details"]) == ["sevrity", "subject"]


def test_post_tickets_takes_the_received_events_detail_back_without_trusting_it(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """A ticketing system may post the seed's TicketReceived detail as it is, with
    ``correlation_id`` and ``customer_context``: accepted (they are the seed's own names),
    not trusted (the caller's VIP claim changes nothing; the correlation id is ours)."""
    response = supervisor_key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-31",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "No connection since this morning.",
            "timestamp": "2026-12-06T09:00:00Z",
            "correlation_id": "their-correlation-1",
            "customer_context": {"is_vip": True, "account_type": "business"},
        },
        format="json",
    )
    assert response.status_code in (201, 202), response.content
    ticket = Ticket.objects.get(origin_platform_id="TKT-31")
    assert str(ticket.correlation_id) != "their-correlation-1"
    customer.refresh_from_db()
    assert (customer.vip_tier, customer.account_type) == ("none", "individual")
    # not an object, or an over-long id: a 400 naming the field
    for field, value in (("customer_context", ["vip"]), ("correlation_id", "c" * 300)):
        bad = supervisor_key_client.post(
            "/tickets",
            {"customer_id": str(customer.pk), "subject": "x", field: value},
            format="json",
        )
        assert bad.status_code == 400, bad.content
        assert field in bad.json()["error"]["details"]


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


def test_the_routing_row_shows_an_agent_no_count_of_tickets_it_may_not_see(
    settings: Any,
    key_client: APIClient,
    supervisor_key_client: APIClient,
    customer: Customer,
    agent: Any,
) -> None:
    """Seed 004's row keeps its shape (``tool_calls`` as the trace, ``reasoning`` a
    string), but an agent's key is shown the customer-history counts as null (named in the
    tool output's ``withheld``) when they counted another team's ticket; a supervisor's
    key all of them."""
    settings.ROUTING_ENABLED = True
    settings.AI_PROVIDER = "local"
    billing = Team.objects.create(name="Billing", slug="billing")
    orders = Team.objects.create(name="Orders", slug="orders")
    orders.members.add(agent)
    Ticket.objects.create(customer=customer, subject="Chargeback", team=billing)
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )
    routing_decide(ticket_id=ticket.pk)
    Ticket.objects.filter(pk=ticket.pk).update(team=orders)

    def history(body: dict[str, Any]) -> dict[str, Any]:
        [call] = [c for c in body["tool_calls"] if c["name"] == "get_historical_context"]
        return call["output"]  # type: ignore[no-any-return]

    whole = supervisor_key_client.get(f"/tickets/{ticket.pk}").json()
    mine = key_client.get(f"/tickets/{ticket.pk}").json()
    assert set(mine) == set(whole)
    assert history(whole)["tickets_last_7_days"] == 1
    assert history(whole)["open_tickets"] == 1
    assert "1 recent ticket(s)" in whole["reasoning"]
    assert (history(mine)["tickets_last_7_days"], history(mine)["open_tickets"]) == (None, None)
    assert "open_tickets" in history(mine)["withheld"]
    assert history(mine)["recent_tickets"] == []
    assert "recent ticket" not in str(mine)
    assert isinstance(mine["reasoning"], str)


def test_escalation_history_is_whether_an_earlier_routing_needed_a_person(
    customer: Customer, settings: Any
) -> None:
    """Seed 004's ``get_historical_context``: ``'escalation_history': any(
    t.get('requires_manual_review') for t in tickets)``, over the customer's earlier
    routing decisions. Before, it was whether an earlier ticket was urgent: a customer
    whose every earlier ticket went to human review read ``false``. (The project's own
    ``past_escalations`` still counts the urgent ones.)"""
    settings.ROUTING_ENABLED = True
    settings.AI_PROVIDER = "local"
    earlier = ticket_services.ticket_create(
        customer=customer, subject="Refund", body="Charged twice, please refund"
    )
    routing_decide(ticket_id=earlier.pk)
    RoutingDecision.objects.filter(ticket=earlier).update(requires_manual_review=True)
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )

    def history(decision: RoutingDecision) -> dict[str, Any]:
        [call] = [c for c in decision.tool_calls if c["name"] == "get_historical_context"]
        return call["output"]  # type: ignore[no-any-return]

    out = history(routing_decide(ticket_id=ticket.pk))
    assert (out["escalation_history"], out["past_escalations"]) == (True, 0)
    # an urgent earlier ticket whose routing needed no person: counted, not the seed's flag
    RoutingDecision.objects.update(requires_manual_review=False)
    Ticket.objects.filter(pk=earlier.pk).update(priority="urgent")
    third = ticket_services.ticket_create(customer=customer, subject="Hello", body="a question")
    out = history(routing_decide(ticket_id=third.pk))
    assert (out["escalation_history"], out["past_escalations"]) == (False, 1)


# --- timestamp (seed 004's TicketReceived "timestamp": "ISO8601") ----------------------------


def _ticket_received(ticket: Ticket) -> dict[str, Any]:
    created = OutboxEvent.objects.get(event_type="ticket.created", payload__ticket_id=ticket.pk)
    return ticket_received_detail(event=created.envelope())


def test_post_tickets_keeps_the_timestamp_as_when_the_customer_sent_it(
    supervisor_key_client: APIClient, supervisor: Any, customer: Customer, settings: Any
) -> None:
    """Before, ``timestamp`` was accepted and dropped: the ticket showed only when it
    reached this platform. Now it is the first message's ``sent_at`` (where channel intake
    keeps a customer's send time), shown on the ticket page and carried as the
    ``TicketReceived`` detail's ``timestamp``."""
    settings.ROUTING_ENABLED = False
    response = supervisor_key_client.post(
        "/tickets",
        {
            "ticket_id": "TKT-41",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "No connection since this morning.",
            "timestamp": "2026-01-02T08:30:00+01:00",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    ticket = Ticket.objects.get(origin_platform_id="TKT-41")
    [message] = ticket.messages.all()
    assert message.metadata["sent_at"] == "2026-01-02T07:30:00+00:00"  # as channels keep it
    assert _ticket_received(ticket)["timestamp"] == "2026-01-02T07:30:00Z"  # the envelope's form

    web = Client()
    web.force_login(supervisor)
    page = web.get(f"/tickets/{ticket.pk}/").content.decode()
    assert 'class="muted sent-at">sent <time datetime="2026-01-02T07:30:00+00:00"' in page


def test_post_tickets_refuses_a_timestamp_it_cannot_keep(
    supervisor_key_client: APIClient, customer: Customer
) -> None:
    """A 400 naming ``timestamp`` and saying what is wrong; nothing is created."""
    ahead = (timezone.now() + timedelta(hours=2)).isoformat()
    for value, says in (
        ("yesterday", "Not an ISO 8601 date and time"),
        ("2026-13-01T00:00:00Z", "Not an ISO 8601 date and time"),
        ("2026-01-02T08:30:00", "No UTC offset"),
        (ahead, "In the future"),
    ):
        response = supervisor_key_client.post(
            "/tickets",
            {
                "customer_id": str(customer.pk),
                "subject": "x",
                "description": "y",
                "timestamp": value,
            },
            format="json",
        )
        assert response.status_code == 400, (value, response.content)
        [message] = response.json()["error"]["details"]["timestamp"]
        assert message.startswith(says), (value, message)
    # without a message it would be kept nowhere: said, not dropped
    alone = supervisor_key_client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "x", "timestamp": "2026-01-02T08:30:00Z"},
        format="json",
    )
    assert alone.status_code == 400
    assert "timestamp" in alone.json()["error"]["details"]
    assert not Ticket.objects.exists()
    # a clock a little fast is not refused
    close = (timezone.now() + timedelta(minutes=2)).isoformat()
    ok = supervisor_key_client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "x", "description": "y", "timestamp": close},
        format="json",
    )
    assert ok.status_code == 202, ok.content


# --- VIP status: one answer for the event and the tool ----------------------------------------


@responses.activate
def test_the_received_event_and_the_vip_tool_read_the_customer_database_alike(
    customer: Customer, settings: Any
) -> None:
    """Seed 004's ingestion "Query customer database for VIP status" before it publishes
    ``TicketReceived``; its VIP tool asks the same database. Before, the event read only
    the customer row (``is_vip`` false here) while the routing decision of the same ticket
    read the database (a VIP): a consumer of the bus and the decision disagreed."""
    customer_db.customer_cache_clear()
    settings.ROUTING_ENABLED = True
    settings.AI_PROVIDER = "local"
    settings.ROUTING_CUSTOMER_DB_URL = "https://customers.example.test"
    settings.ROUTING_CUSTOMER_DB_CACHE_SECONDS = 0.0
    settings.ROUTING_CUSTOMER_DB_VIP_TIER = "gold"
    responses.get(
        f"https://customers.example.test/customers/{customer.pk}",
        json={"is_vip": True, "account_type": "business"},
    )
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    decision = routing_decide(ticket_id=ticket.pk)
    [vip] = [c["output"] for c in decision.tool_calls if c["name"] == "check_vip_status"]
    context = _ticket_received(ticket)["customer_context"]
    assert context == {"is_vip": True, "account_type": "business"}
    assert (vip["is_vip"], vip["account_type"]) == (context["is_vip"], context["account_type"])
    assert len(responses.calls) == 2  # each asked the database (cache off)

    # the database down: both fall back to the customer row, and still agree
    customer_db.customer_cache_clear()
    responses.replace(
        responses.GET, f"https://customers.example.test/customers/{customer.pk}", status=503
    )
    assert _ticket_received(ticket)["customer_context"] == {
        "is_vip": False,
        "account_type": "individual",
    }


# --- GET /tickets/{id} after a person's override ---------------------------------------------


def test_the_row_stays_the_routers_and_says_what_a_person_changed(
    supervisor_key_client: APIClient, supervisor: Any, customer: Customer, settings: Any
) -> None:
    """Seed 004's table is the router's record ("Store routing decisions for audit"):
    ``assigned_team`` stays the router's after a supervisor's override. Before, nothing in
    the answer said the ticket had moved, and a caller read the router's team as the
    ticket's. ``current_team`` / ``current_priority`` are the ticket's now, ``verdict`` the
    person's latest verdict (without their name or note)."""
    settings.ROUTING_ENABLED = False
    created = _submit(supervisor_key_client, customer, "TKT-51").json()
    billing = Team.objects.create(name="Billing", slug="billing")
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    ticket = Ticket.objects.get(pk=created["id"])
    pending = supervisor_key_client.get("/tickets/TKT-51").json()
    assert (pending["current_team"], pending["current_priority"]) == (None, ticket.priority)
    decision = RoutingDecision.objects.create(
        ticket=ticket,
        team=billing,
        team_slug="billing",
        priority="normal",
        confidence=0.9,
        correlation_id=ticket.correlation_id,
    )
    Ticket.objects.filter(pk=ticket.pk).update(team=billing)
    decided = supervisor_key_client.get("/tickets/TKT-51").json()
    assert (decided["assigned_team"], decided["current_team"], decided["verdict"]) == (
        "billing",
        "billing",
        None,
    )

    routing_decision_override(
        decision=decision, actor=supervisor, team=elsewhere, priority="high", note="fraud"
    )
    body = supervisor_key_client.get("/tickets/TKT-51").json()
    assert (body["assigned_team"], body["priority_level"]) == ("billing", "normal")
    assert (body["current_team"], body["current_priority"]) == ("elsewhere", "high")
    verdict = body["verdict"]
    assert (verdict["verdict"], verdict["team"], verdict["priority"]) == (
        "overridden",
        "elsewhere",
        "high",
    )
    assert set(verdict) == {"verdict", "team", "priority", "created_at"}  # no name, no note


def test_the_routing_decision_row_matches_its_documented_schema(
    supervisor_key_client: APIClient, customer: Customer, settings: Any
) -> None:
    """``/api/docs`` shows the row's shape (it said "object"): the answer, before and after
    the decision and after a verdict, validates against the published schema."""
    import jsonschema
    from drf_spectacular.generators import SchemaGenerator

    settings.ROUTING_ENABLED = True
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    def nullable(node: Any) -> Any:  # OpenAPI 3.0's ``nullable`` in JSON Schema's words
        if isinstance(node, list):
            return [nullable(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: nullable(value) for key, value in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node

    row_schema = nullable(
        {**components["SeedRoutingDecisionOutput"], "components": schema["components"]}
    )
    validator = jsonschema.Draft202012Validator(row_schema)

    def check(body: dict[str, Any]) -> None:
        errors = [e.message for e in validator.iter_errors(body)]
        assert errors == [], errors
        assert set(body) - set(components["SeedRoutingDecisionOutput"]["properties"]) == set()

    created = supervisor_key_client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "Refund", "description": "Charged twice"},
        format="json",
    ).json()
    ticket = Ticket.objects.get(pk=created["id"])
    RoutingDecision.objects.filter(ticket=ticket).delete()
    check(supervisor_key_client.get(f"/tickets/{ticket.pk}").json())
    routing_decide(ticket_id=ticket.pk)
    check(supervisor_key_client.get(f"/tickets/{ticket.pk}").json())
