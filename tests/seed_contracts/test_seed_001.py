"""Seed 001 (omnichannel architecture): its key endpoints.

Quoted from the seed: "Webhooks: ``POST /api/webhooks/facebook``, ``POST
/api/webhooks/whatsapp``, ``POST /api/webhooks/twitter``, ``POST /api/webhooks/chatbot``.
Tickets: ``POST /api/tickets/create``, ``GET /api/tickets/{id}``, ``PUT /api/tickets/{id}``,
``POST /api/tickets/{id}/message``, ``GET /api/tickets/{id}/status`` (for chatbot
polling)", and the hand-off example::

    POST /api/webhooks/chatbot
    {"source": "web_chat", "customer_email": "user@example.com", "subject": "Cannot login",
     "initial_message": "...", "session_id": "xyz"}
    ... Lambda creates ticket with is_bot_handoff: true ... Returns ticket_id to chatbot

Ticket fields the seed's table names: status, priority, assigned agent, tags, source
(channel, origin_platform_id, is_bot_handoff), customer (name, email), subject, timeline.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from channels_app.adapters.meta.common import meta_signature
from channels_app.fixtures import fixture_load, signed_headers
from channels_app.models import InboundEvent
from channels_app.services.handoff import handoff_signature
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.models import OutboxEvent
from tickets.models import ChannelIdentity, Customer, Message, Tag, Ticket

pytestmark = pytest.mark.django_db

# The seed's example, verbatim ("..." is the seed's own placeholder).
SEED_HANDOFF = {
    "source": "web_chat",
    "customer_email": "user@example.com",
    "subject": "Cannot login",
    "initial_message": "...",
    "session_id": "xyz",
}


def _signed_handoff(client: Client, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    return client.post(
        "/api/webhooks/chatbot",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(TEST_SECRET, body),
    )


def test_chatbot_handoff_returns_the_ticket_id(client: Client) -> None:
    make_account("chatbot")
    response = _signed_handoff(client, SEED_HANDOFF)
    assert response.status_code == 201, response.content
    body = response.json()
    ticket = Ticket.objects.get()
    assert body["ticket_id"] == ticket.pk
    assert body["is_bot_handoff"] is True
    assert ticket.is_bot_handoff
    # the typed address is a claim (a guest holds it; replies are e-mailed to it)
    assert ticket.customer.name == "user@example.com (unverified)"
    assert ticket.messages.get().metadata["claimed_email"] == "user@example.com"


def test_chatbot_polls_status_with_its_signature(client: Client) -> None:
    """ "Chatbot can poll ``GET /api/tickets/{id}/status``" holding only its secret."""
    make_account("chatbot")
    ticket_id = _signed_handoff(client, SEED_HANDOFF).json()["ticket_id"]
    path = f"/api/tickets/{ticket_id}/status"
    stamp = str(int(time.time()))
    response = client.get(
        path,
        HTTP_X_SIGNATURE_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE_256=handoff_signature(TEST_SECRET, stamp, f"GET {path}".encode()),
    )
    assert response.status_code == 200, response.content
    assert response.json()["id"] == ticket_id
    assert {"status", "priority", "updated_at", "last_agent_reply"} <= set(response.json())


def test_create_get_put_and_message(key_client: APIClient) -> None:
    created = key_client.post(
        "/api/tickets/create",
        {
            "subject": "Cannot login",
            "description": "Password reset mail never arrives.",
            "customer": {"name": "Pat", "email": "user@example.com"},
            "channel": "email",
            "tags": ["login"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    ticket_id = created.json()["id"]
    assert {"id", "number", "status", "priority", "correlation_id"} <= set(created.json())

    got = key_client.get(f"/api/tickets/{ticket_id}")
    assert got.status_code == 200
    body = got.json()
    assert body["subject"] == "Cannot login"
    assert body["customer"]["email"] == "user@example.com"
    assert {"status", "priority", "tags", "channel", "is_bot_handoff", "messages"} <= set(body)

    put = key_client.put(
        f"/api/tickets/{ticket_id}", {"status": "open", "priority": "high"}, format="json"
    )
    assert put.status_code == 200, put.content
    assert (put.json()["status"], put.json()["priority"]) == ("open", "high")

    message = key_client.post(
        f"/api/tickets/{ticket_id}/message",
        {"body": "Checking your account now.", "kind": "internal_note"},
        format="json",
    )
    assert message.status_code == 201, message.content
    assert Message.objects.filter(ticket_id=ticket_id, kind="internal_note").count() == 1


def test_ticket_has_seed_001s_assigned_agent_id_and_customer_fields(
    supervisor_key_client: APIClient, customer: Customer, agent: Any
) -> None:
    """The Tickets Table's ``assigned_agent_id`` and ``customer {internal_id, name, email,
    channel_identity}`` (before: neither, and a PUT with ``assigned_agent_id`` answered
    200 and assigned nobody)."""
    ChannelIdentity.objects.create(customer=customer, channel="email", external_id="ada@x.test")
    ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id="+4412")
    ticket = Ticket.objects.create(customer=customer, subject="x", channel="whatsapp")
    put = supervisor_key_client.put(
        f"/api/tickets/{ticket.pk}", {"assigned_agent_id": agent.pk}, format="json"
    )
    assert put.status_code == 200, put.content
    ticket.refresh_from_db()
    assert ticket.assignee_id == agent.pk
    assert (put.json()["assigned_agent_id"], put.json()["assignee"]["id"]) == (agent.pk, agent.pk)
    body = supervisor_key_client.get(f"/api/tickets/{ticket.pk}").json()
    assert body["assigned_agent_id"] == agent.pk
    assert {k: body["customer"][k] for k in ("internal_id", "name", "email")} == {
        "internal_id": str(customer.pk),
        "name": customer.name,
        "email": customer.email,
    }
    assert body["customer"]["channel_identity"] == "+4412"  # the ticket's channel's
    listed = supervisor_key_client.get("/api/tickets").json()["results"][0]
    assert listed["customer"]["channel_identity"] == "+4412"
    assert listed["assigned_agent_id"] == agent.pk
    # No identity on the ticket's channel: null.
    api_ticket = Ticket.objects.create(customer=customer, subject="y", channel="api")
    got = supervisor_key_client.get(f"/api/tickets/{api_ticket.pk}").json()
    assert (got["customer"]["channel_identity"], got["assigned_agent_id"]) == (None, None)
    # Unassigning by the seed's name.
    put = supervisor_key_client.put(
        f"/api/tickets/{ticket.pk}", {"assigned_agent_id": None}, format="json"
    )
    assert put.status_code == 200, put.content
    ticket.refresh_from_db()
    assert ticket.assignee_id is None


def test_assigned_agent_id_follows_the_assignee_rules(
    key_client: APIClient, customer: Customer, agent: Any, other_agent: Any
) -> None:
    ticket = Ticket.objects.create(customer=customer, subject="x")  # no team: the agent sees it
    url = f"/api/tickets/{ticket.pk}"
    refused = key_client.put(url, {"assigned_agent_id": other_agent.pk}, format="json")
    assert refused.status_code == 403, refused.content  # agents may not assign others
    both = key_client.put(
        url, {"assigned_agent_id": agent.pk, "assignee_id": other_agent.pk}, format="json"
    )
    assert both.status_code == 400, both.content
    assert "assigned_agent_id" in both.json()["error"]["details"]
    ticket.refresh_from_db()
    assert ticket.assignee_id is None
    same = key_client.patch(
        url, {"assigned_agent_id": agent.pk, "assignee_id": agent.pk}, format="json"
    )
    assert same.status_code == 200, same.content
    ticket.refresh_from_db()
    assert ticket.assignee_id == agent.pk


def test_put_is_405_with_the_seed_contracts_off(key_client: APIClient, settings: Any) -> None:
    ticket_id = key_client.post(
        "/api/tickets", {"subject": "x", "customer": {"email": "a@example.com"}}, format="json"
    ).json()["id"]
    settings.SEED_CONTRACTS_ENABLED = False
    assert key_client.put(f"/api/tickets/{ticket_id}", {"priority": "high"}).status_code == 405
    assert key_client.post("/api/tickets/create", {}, format="json").status_code == 404


def test_facebook_webhook_without_a_token_finds_its_account(client: Client) -> None:
    """Two Messenger pages: the delivery goes to the one whose app secret signed it."""
    make_account("messenger", name="other", app_secret="another-secret", external_id="1")
    account = make_account("messenger")
    fixture = fixture_load("messenger", "text_message")
    response = client.post(
        "/api/webhooks/facebook",
        fixture.body,
        content_type="application/json",
        headers=signed_headers(account, fixture),
    )
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().account_id == account.pk
    forged = client.post(
        "/api/webhooks/facebook",
        fixture.body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature("not-a-secret", fixture.body),
    )
    assert forged.status_code == 403
    assert InboundEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("channel", "path", "fixture_name"),
    [
        ("whatsapp", "/api/webhooks/whatsapp", "text_message"),
        ("twitter", "/api/webhooks/twitter", "dm_message_create"),
    ],
)
def test_webhook_without_a_token(
    client: Client, channel: str, path: str, fixture_name: str
) -> None:
    account = make_account(channel)
    fixture = fixture_load(channel, fixture_name)
    response = client.post(
        path,
        fixture.body,
        content_type="application/json",
        headers=signed_headers(account, fixture),
    )
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().account_id == account.pk


def test_event_envelope_ids_stay_numbers(key_client: APIClient) -> None:
    """Seed 001's Kafka schema shows string ids; the envelope keeps numbers for existing
    consumers (docs/api.md, "Deliberate differences in the events"): pinned here so the
    difference stays a documented choice, not an accident."""
    created = key_client.post(
        "/api/tickets", {"subject": "x", "customer": {"email": "a@example.com"}}, format="json"
    ).json()
    envelope = OutboxEvent.objects.get(event_type="ticket.created").envelope()
    ticket = Ticket.objects.get(pk=created["id"])
    assert (envelope["ticket_id"], envelope["customer_id"]) == (ticket.pk, ticket.customer_id)


def test_every_attribute_of_the_tickets_table_is_on_the_api_with_its_type(
    supervisor_key_client: APIClient, customer: Customer, agent: Any
) -> None:
    """The Tickets Table's attributes, each read back by ``GET /api/tickets/{id}``:
    ``created_at, updated_at, status, priority, assigned_agent_id, tags[], source {channel,
    origin_platform_id, is_bot_handoff}, customer {internal_id, name, email,
    channel_identity}, subject, timeline[]`` (``source`` flattened and the timeline named
    ``messages``: docs/api.md, "Seed contracts")."""
    ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id="+4412")
    ticket = Ticket.objects.create(
        customer=customer,
        subject="Router down",
        channel="whatsapp",
        origin_platform_id="wamid.1",
        priority="high",
        assignee=agent,
    )
    ticket.tags.set([Tag.objects.create(name="network")])
    Message.objects.create(ticket=ticket, body_text="It blinks red.", channel="whatsapp")
    body = supervisor_key_client.get(f"/api/tickets/{ticket.pk}").json()
    ticket.refresh_from_db()
    assert {
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "status": body["status"],
        "priority": body["priority"],
        "assigned_agent_id": body["assigned_agent_id"],
        "tags": body["tags"],
        "channel": body["channel"],
        "origin_platform_id": body["origin_platform_id"],
        "is_bot_handoff": body["is_bot_handoff"],
        "subject": body["subject"],
    } == {
        "created_at": ticket.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": ticket.updated_at.isoformat().replace("+00:00", "Z"),
        "status": "new",
        "priority": "high",
        "assigned_agent_id": agent.pk,
        "tags": ["network"],
        "channel": "whatsapp",
        "origin_platform_id": "wamid.1",
        "is_bot_handoff": False,
        "subject": "Router down",
    }
    assert {k: body["customer"][k] for k in ("internal_id", "name", "email")} == {
        "internal_id": str(customer.pk),
        "name": customer.name,
        "email": customer.email,
    }
    assert body["customer"]["channel_identity"] == "+4412"
    assert [m["body_text"] for m in body["messages"]] == ["It blinks red."]


def test_signatures_that_match_no_account_are_limited_per_address(
    client: Client, settings: Any
) -> None:
    """Without a token the account is found by trying every active one's secret: each
    forged delivery cost one HMAC of the body (up to 1 MiB) per account, 60,000 times a
    minute (the webhook limit). Misses are now limited per address like failed API keys;
    matching deliveries are not counted, and other addresses are not affected."""
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    make_account("messenger", name="other", app_secret="another-secret", external_id="1")
    account = make_account("messenger")
    fixture = fixture_load("messenger", "text_message")
    forged = [
        client.post(
            "/api/webhooks/facebook",
            fixture.body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature("not-a-secret", fixture.body),
        ).status_code
        for _ in range(3)
    ]
    assert forged == [403, 403, 429]
    genuine = Client(REMOTE_ADDR="192.0.2.9").post(
        "/api/webhooks/facebook",
        fixture.body,
        content_type="application/json",
        headers=signed_headers(account, fixture),
    )
    assert genuine.status_code == 200, genuine.content
    assert InboundEvent.objects.get().account_id == account.pk
