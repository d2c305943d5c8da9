"""Chatbot hand-off, after the hand-off: the agent's reply reaches the customer's e-mail
(seed 001: "Chatbot: 'Ticket #12345 created. Agent will email you.'"), the bot's callback
gets it signed, and the bot polls its own ticket's status with its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import responses
from django.test import Client

from channels_app.adapters.meta.common import meta_signature
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.delivery.models import Attempt, Delivery
from tickets.models import DeliveryState, Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
CALLBACK = "https://bot.example.com/support-replies"
HANDOFF = {
    "source": "web_chat",
    "customer_email": "user@example.com",
    "subject": "Cannot login",
    "initial_message": "The reset link never arrives.",
    "session_id": "xyz",
}


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Name resolution for the safe-URL check (tests have no network)."""
    table = {"bot.example.com": ["93.184.216.34"], "internal.example.com": ["10.0.0.5"]}
    monkeypatch.setattr("support.safe_urls._resolve", lambda host, port: table[host])
    return table


@pytest.fixture
def email_account() -> Any:
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test", "from_name": "Acme Support"}
    account.save()
    return account


def _handoff(client: Client, payload: dict[str, Any], secret: str = TEST_SECRET) -> Any:
    body = json.dumps(payload).encode()
    return client.post(
        "/api/webhooks/chatbot",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(secret, body),
    )


def _reply(ticket: Ticket, agent: Any, capture: Any, text: str) -> Message:
    with capture(execute=True):
        return message_add(ticket=ticket, body=text, author_user=agent)


@responses.activate
def test_agent_reply_on_a_hand_off_ticket_is_emailed_to_the_customer(
    client: Client, agent: Any, email_account: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = Ticket.objects.get(pk=_handoff(client, HANDOFF).json()["ticket_id"])
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    message = _reply(ticket, agent, django_capture_on_commit_callbacks, "Here is a new link.")
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body or b"")
    assert sent["personalizations"] == [{"to": [{"email": "user@example.com"}]}]
    assert sent["subject"] == f"Re: Cannot login [{ticket.number}]"
    assert sent["content"] == [{"type": "text/plain", "value": "Here is a new link."}]
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.target_key, delivery.idempotency_key) == (
        "channel_reply",
        f"email:{email_account.pk}",
        f"message:{message.pk}",
    )
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert Attempt.objects.get(delivery=delivery).outcome == "success"
    message.refresh_from_db()
    assert message.delivery_status == DeliveryState.SENT


def test_without_an_email_account_the_reply_is_marked_failed_not_queued(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = Ticket.objects.get(pk=_handoff(client, HANDOFF).json()["ticket_id"])
    message = _reply(ticket, agent, django_capture_on_commit_callbacks, "Hello")
    message.refresh_from_db()
    assert message.delivery_status == DeliveryState.FAILED
    assert "No e-mail account" in message.delivery_error
    assert Delivery.objects.count() == 0


@responses.activate
def test_reply_is_also_posted_signed_to_the_bot_callback(
    client: Client,
    agent: Any,
    email_account: Any,
    public_dns: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_account("chatbot")
    response = _handoff(client, {**HANDOFF, "callback_url": CALLBACK})
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket_id"])
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(CALLBACK, status=200, body="ok")
    message = _reply(ticket, agent, django_capture_on_commit_callbacks, "Here is a new link.")
    [callback] = [c for c in responses.calls if c.request.url == CALLBACK]
    headers = callback.request.headers
    body = callback.request.body
    assert isinstance(body, bytes)
    stamp = headers["X-Signature-Timestamp"]
    expected = hmac.new(TEST_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Signature-256"] == "sha256=" + expected.hexdigest()
    assert abs(int(stamp) - time.time()) < 300
    payload = json.loads(body)
    assert payload["event"] == "agent_reply"
    assert (payload["ticket_id"], payload["session_id"]) == (ticket.pk, "xyz")
    assert payload["message"]["body_text"] == "Here is a new link."
    kinds = dict(Delivery.objects.values_list("target_kind", "status"))
    assert kinds == {"channel_reply": "succeeded", "chatbot_callback": "succeeded"}
    assert Delivery.objects.get(target_kind="chatbot_callback").idempotency_key == (
        f"message:{message.pk}"
    )


@responses.activate
def test_an_over_large_callback_answer_is_a_failed_callback_not_read_whole(
    client: Client,
    agent: Any,
    email_account: Any,
    public_dns: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The callback URL is the bot's to choose: its answer is read up to 64 KiB
    (``public_post``); a larger one fails the callback for good, never read whole into the
    worker's memory, and the e-mail reply is unaffected."""
    make_account("chatbot")
    ticket_id = _handoff(client, {**HANDOFF, "callback_url": CALLBACK}).json()["ticket_id"]
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(CALLBACK, status=200, body="x" * (1024 * 1024))
    _reply(Ticket.objects.get(pk=ticket_id), agent, django_capture_on_commit_callbacks, "Hi")
    callback = Delivery.objects.get(target_kind="chatbot_callback")
    assert (callback.status, callback.attempts, callback.error_code) == (
        "dead",
        1,
        "answer_too_large",
    )
    assert "over 65536 bytes" in callback.last_error
    assert Delivery.objects.get(target_kind="channel_reply").status == "succeeded"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://internal.example.com/hook",
        "http://bot.example.com/hook",
        "https://user:pw@bot.example.com/hook",
        "javascript:alert(1)",
    ],
)
def test_callback_urls_to_internal_addresses_are_refused(
    client: Client, public_dns: Any, url: str
) -> None:
    make_account("chatbot")
    response = _handoff(client, {**HANDOFF, "callback_url": url})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"]["callback_url"]
    assert Ticket.objects.count() == 0


def test_a_callback_needs_a_signed_hand_off(client: Client, agent: Any, public_dns: Any) -> None:
    from support.services import api_key_create

    key = api_key_create(name="bot", user=agent)[1]
    response = client.post(
        "/api/webhooks/chatbot",
        {**HANDOFF, "callback_url": CALLBACK},
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 400
    assert Ticket.objects.count() == 0


@responses.activate
def test_callback_url_is_checked_again_before_each_send(
    client: Client,
    agent: Any,
    email_account: Any,
    public_dns: dict[str, list[str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """DNS may point the name elsewhere after the hand-off: the send is refused then."""
    make_account("chatbot")
    ticket_id = _handoff(client, {**HANDOFF, "callback_url": CALLBACK}).json()["ticket_id"]
    public_dns["bot.example.com"] = ["127.0.0.1"]
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    _reply(Ticket.objects.get(pk=ticket_id), agent, django_capture_on_commit_callbacks, "Hi")
    assert [c.request.url for c in responses.calls] == [SENDGRID]
    callback = Delivery.objects.get(target_kind="chatbot_callback")
    assert callback.status == "dead"
    assert "internal address" in callback.last_error


# --- polling ---------------------------------------------------------------------------------


def _poll(client: Client, ticket_id: int, secret: str = TEST_SECRET, stamp: str = "") -> Any:
    path = f"/api/tickets/{ticket_id}/status"
    stamp = stamp or str(int(time.time()))
    message = f"{stamp}.GET {path}".encode()
    signature = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return client.get(path, HTTP_X_SIGNATURE_TIMESTAMP=stamp, HTTP_X_SIGNATURE_256=signature)


def test_bot_polls_only_its_own_ticket(client: Client, agent: Any) -> None:
    make_account("chatbot")
    make_account("chatbot", name="other-bot", app_secret="other-bot-secret")
    mine = _handoff(client, HANDOFF).json()["ticket_id"]
    theirs = _handoff(client, {**HANDOFF, "session_id": "other"}, secret="other-bot-secret").json()[
        "ticket_id"
    ]
    ok = _poll(client, mine)
    assert ok.status_code == 200
    assert (ok.json()["id"], ok.json()["status"], ok.json()["last_agent_reply"]) == (
        mine,
        "new",
        None,
    )
    assert _poll(client, theirs).status_code == 404
    assert _poll(client, theirs, secret="other-bot-secret").status_code == 200
    # an ordinary ticket is no bot's
    other = Ticket.objects.create(customer=Ticket.objects.get(pk=mine).customer, subject="x")
    assert _poll(client, other.pk).status_code == 404


def test_poll_refusals(client: Client) -> None:
    make_account("chatbot")
    ticket_id = _handoff(client, HANDOFF).json()["ticket_id"]
    assert client.get(f"/api/tickets/{ticket_id}/status").status_code == 401
    assert _poll(client, ticket_id, secret="forged").status_code == 403
    stale = str(int(time.time()) - 3600)
    assert _poll(client, ticket_id, stamp=stale).status_code == 401
    # a signature is bound to its path: replayed on another ticket's path it matches nothing
    second = _handoff(client, {**HANDOFF, "session_id": "second"}).json()["ticket_id"]
    stamp = str(int(time.time()))
    message = f"{stamp}.GET /api/tickets/{ticket_id}/status".encode()
    signature = "sha256=" + hmac.new(TEST_SECRET.encode(), message, hashlib.sha256).hexdigest()
    replayed = client.get(
        f"/api/tickets/{second}/status",
        HTTP_X_SIGNATURE_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE_256=signature,
    )
    assert replayed.status_code == 403
