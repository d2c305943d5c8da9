"""A 429 that names no Retry-After but when its rate limit resets (X's
``x-rate-limit-reset``, SendGrid's ``X-RateLimit-Reset``: Unix seconds) is retried once the
window has opened again, not on the engine's short backoff until the reply is dead."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from channels_app import services
from channels_app.adapters.base import http_call
from channels_app.adapters.meta.common import meta_signature
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.delivery import services as engine
from support.delivery.models import Circuit, Delivery
from support.errors import RetryableError
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

X_URL = "https://api.x.com/2/dm_conversations/with/4337869213/messages"
SENDGRID_URL = "https://api.sendgrid.com/v3/mail/send"
X_TOO_MANY = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}


@responses.activate
def test_an_x_429_waits_until_its_window_resets_then_the_reply_goes_out(
    post_fixture: Any, agent: Any, settings: Any
) -> None:
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    post_fixture(make_account("twitter"), "dm_message_create")
    ticket = Ticket.objects.get()
    reset = int(time.time()) + 600  # X's 15-minute window has 10 minutes to run
    responses.post(
        X_URL,
        status=429,
        headers={
            "x-rate-limit-limit": "15",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        },
        json=X_TOO_MANY,
    )
    responses.post(
        X_URL, status=201, json={"data": {"dm_conversation_id": "1-2", "dm_event_id": "777"}}
    )
    message = message_add(ticket=ticket, body="Checking now", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert report.outcome == "throttled"
    assert report.next_attempt_in is not None
    assert 599 <= report.next_attempt_in <= 602  # the reset, not a few seconds' backoff
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    assert delivery.last_error == "HTTP 429: Too Many Requests"  # no raw answer
    # the account is paused until the reset: no reply goes to X before it
    circuit = Circuit.objects.get(target_kind="channel_reply")
    assert circuit.state == "open"
    assert circuit.open_until is not None
    assert abs(circuit.open_until.timestamp() - reset) <= 3
    # the window has reset
    past = timezone.now() - timedelta(seconds=1)
    Circuit.objects.update(open_until=past)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=past)
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    message = Message.objects.get(pk=message.pk)
    assert message.delivery_status == "sent"
    assert len(responses.calls) == 2


@responses.activate
def test_a_reset_further_than_the_engine_waits_is_capped(
    post_fixture: Any, agent: Any, settings: Any
) -> None:
    """X's 24-hour cap per user: the wait is capped (``DELIVERY_RETRY_AFTER_MAX_SECONDS``),
    the window of a limit with calls left is not waited for."""
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    post_fixture(make_account("twitter"), "dm_message_create")
    ticket = Ticket.objects.get()
    now = int(time.time())
    responses.post(
        X_URL,
        status=429,
        headers={
            "x-rate-limit-remaining": "14",
            "x-rate-limit-reset": str(now + 60),
            "x-user-limit-24hour-remaining": "0",
            "x-user-limit-24hour-reset": str(now + 20 * 3600),
        },
        json=X_TOO_MANY,
    )
    message = message_add(ticket=ticket, body="Checking now", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (report.outcome, report.next_attempt_in) == ("throttled", 900.0)


@responses.activate
def test_a_sendgrid_429_reads_x_ratelimit_reset() -> None:
    reset = int(time.time()) + 30
    responses.post(
        SENDGRID_URL,
        status=429,
        headers={
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        },
        json={"errors": [{"field": None, "message": "too many requests"}]},
    )
    with pytest.raises(RetryableError) as caught:
        http_call("POST", SENDGRID_URL, json={})
    assert caught.value.retry_after is not None
    assert 29 <= caught.value.retry_after <= 32
    assert str(caught.value) == "HTTP 429: too many requests"


BOT_CALLBACK = "https://bot.example.com/support-replies"


@responses.activate
def test_a_bot_callback_429_with_only_a_reset_header_waits_for_the_reset(
    client: Client, agent: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chatbot hand-off callback reads the same headers as the channel adapters
    (``retry_after_from_headers``): a bot behind a rate limiter answering 429 with
    ``X-RateLimit-Reset`` and no ``Retry-After`` is called again no earlier than the reset
    (before, after the engine's few seconds' backoff, into the same closed window)."""
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    settings.SITE_URL = "https://support.example.com"
    monkeypatch.setattr("support.safe_urls._resolve", lambda host, port: ["93.184.216.34"])
    email = make_account("email")
    email.settings = {"from_email": "support@acme.test"}
    email.save()
    make_account("chatbot")
    body = json.dumps(
        {
            "source": "web_chat",
            "customer_email": "user@example.com",
            "subject": "Cannot login",
            "initial_message": "The reset link never arrives.",
            "session_id": "xyz",
            "callback_url": BOT_CALLBACK,
        }
    ).encode()
    answer = client.post(
        "/api/webhooks/chatbot",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(TEST_SECRET, body),
    )
    assert answer.status_code == 201, answer.content
    ticket = Ticket.objects.get(pk=answer.json()["ticket_id"])
    reset = int(time.time()) + 600
    responses.post(
        BOT_CALLBACK,
        status=429,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        body="slow down",
    )
    message = message_add(ticket=ticket, body="Checking now", author_user=agent)
    services.outbound_delivery_create(message_id=message.pk)
    delivery = Delivery.objects.get(target_kind="chatbot_callback")

    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)

    assert report.outcome == "throttled"
    assert report.next_attempt_in is not None
    assert reset - time.time() <= report.next_attempt_in <= reset - time.time() + 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == (
        "retrying",
        1,
        429,
    )
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at.timestamp() >= reset - 1
    # the bot's circuit waits for the reset too: nothing else is sent to it before then
    circuit = Circuit.objects.get(target_kind="chatbot_callback")
    assert circuit.open_until is not None
    assert abs(circuit.open_until.timestamp() - reset) <= 3
    assert [c.request.url for c in responses.calls] == [BOT_CALLBACK]
