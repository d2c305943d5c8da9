"""Chatbot hand-off (API key or HMAC) and the web chat widget's endpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels_app.adapters.meta.common import meta_signature
from channels_app.tests.conftest import TEST_SECRET, counts, diff, make_account
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db

HANDOFF = {
    "source": "website-bot",
    "customer_email": "ana@example.com",
    "subject": "Bot could not help with a refund",
    "initial_message": "I want a refund for order 77",
    "session_id": "sess-123",
    "transcript": [{"role": "user", "text": "refund"}, {"role": "bot", "text": "Which order?"}],
}


def _signed_post(client: APIClient, payload: dict[str, Any], secret: str = TEST_SECRET) -> Any:
    body = json.dumps(payload).encode()
    return client.generic(
        "POST",
        "/api/webhooks/chatbot",
        data=body,  # type: ignore[arg-type]
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(secret, body),
    )


def test_hmac_signed_handoff_creates_one_ticket_per_session(api_client: APIClient) -> None:
    make_account("chatbot")
    before = counts()
    response = _signed_post(api_client, HANDOFF)
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get()
    assert response.json() == {
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "status": "new",
        "is_bot_handoff": True,
        "status_url": f"/api/tickets/{ticket.pk}/status",
    }
    assert diff(before, counts()) == {"customers": 1, "tickets": 1, "messages": 2}
    assert (ticket.channel, ticket.is_bot_handoff, ticket.origin_platform_id) == (
        "chatbot",
        True,
        "sess-123",
    )
    note = Message.objects.get(kind="internal_note")
    assert note.body_text == "Bot transcript\nuser: refund\nbot: Which order?"
    again = _signed_post(api_client, HANDOFF)
    assert again.status_code == 200
    assert again.json()["ticket_id"] == ticket.pk
    assert Ticket.objects.count() == 1


def test_handoff_refuses_forged_and_unauthenticated(api_client: APIClient) -> None:
    make_account("chatbot")
    assert _signed_post(api_client, HANDOFF, secret="wrong").status_code == 403
    response = api_client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert response.status_code == 401
    assert Ticket.objects.count() == 0


def test_handoff_with_an_agent_api_key_and_validation(agent: Any, api_client: APIClient) -> None:
    from support.services import api_key_create

    _, raw = api_key_create(user=agent, name="bot")
    api_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    bad = api_client.post(
        "/api/webhooks/chatbot", {**HANDOFF, "customer_email": "x"}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"
    ok = api_client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert ok.status_code == 201
    status = api_client.get(ok.json()["status_url"])
    assert status.status_code == 200


def test_webchat_session_message_and_poll(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = client.post(
        f"/api/webchat/{account.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    assert started.status_code == 201
    session = started.json()["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(
            started.json()["messages_url"],
            data={"text": "Hi there", "client_id": "client-0001"},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=session,
        )
    assert sent.status_code == 200
    polled = client.get(started.json()["poll_url"], HTTP_X_WEBCHAT_SESSION=session)
    assert polled.status_code == 200
    [message] = polled.json()["messages"]
    assert (message["from"], message["text"], message["client_id"]) == (
        "visitor",
        "Hi there",
        "client-0001",
    )
    ticket = Ticket.objects.get()
    # What the visitor typed is a claim kept for agents, never the customer's address.
    assert (ticket.customer.name, ticket.customer.email) == ("Vera", "")
    assert Message.objects.get().metadata["claimed_email"] == "vera@example.com"
    assert client.get(started.json()["poll_url"]).status_code == 401
    assert (
        client.get(started.json()["poll_url"], HTTP_X_WEBCHAT_SESSION="forged").status_code == 403
    )


def test_webchat_session_for_another_widget_is_refused(client: Any) -> None:
    one = make_account("webchat", name="one")
    two = make_account("webchat", name="two")
    started = client.post(
        f"/api/webchat/{one.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    response = client.get(
        f"/api/webchat/{two.webhook_token}/messages",
        HTTP_X_WEBCHAT_SESSION=started.json()["session"],
    )
    assert response.status_code == 403


def test_widget_endpoints_allow_cross_origin_without_cookies(client: Any) -> None:
    account = make_account("webchat")
    preflight = client.options(f"/api/webhooks/webchat/{account.webhook_token}")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Headers"] == "Content-Type, X-Webchat-Session"
    other = make_account("whatsapp")
    response = client.get(other.webhook_path)
    assert "Access-Control-Allow-Origin" not in response


def test_widget_script_is_served_from_static(client: Any) -> None:
    from django.contrib.staticfiles import finders

    path = finders.find("webchat/widget.js")
    assert path is not None
    with open(path, encoding="utf-8") as fh:
        script = fh.read()
    assert "/ws/webchat/" in script
    assert "X-Webchat-Session" in script
