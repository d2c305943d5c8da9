"""Meta's Graph API errors classified by ``error.code``, not the HTTP status (WhatsApp Cloud
API, Messenger, Instagram): throttling and temporary failures answered as HTTP 400 are
retried, the closed window and the account's setup are dead letters in words; the agent
never sees the raw answer. Error bodies in the shapes Meta documents (Graph API "Handling
Errors", WhatsApp Cloud API "Error codes"). HTTP mocked with responses."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.utils import timezone

from channels_app import services
from channels_app.tests.conftest import make_account
from support.delivery import services as engine
from support.delivery.models import Circuit, Delivery
from support.delivery.services import AttemptReport
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
MESSENGER_URL = "https://graph.facebook.com/v21.0/me/messages"
IG_URL = "https://graph.facebook.com/v21.0/17841405822304914/messages"
URLS = {"whatsapp": WA_URL, "messenger": MESSENGER_URL, "instagram": IG_URL}


def wa_error(code: int, title: str, details: str, **more: Any) -> dict[str, Any]:
    """A WhatsApp Cloud API error answer (its documented shape)."""
    return {
        "error": {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            **more,
        }
    }


def graph_error(code: int, message: str, **more: Any) -> dict[str, Any]:
    """A Graph API error answer (Messenger, Instagram)."""
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbCdEfGh",
            **more,
        }
    }


@pytest.fixture
def ticket_on(post_fixture: Any) -> Any:
    def make(channel: str) -> Ticket:
        post_fixture(make_account(channel), "text_message")
        return Ticket.objects.get()

    return make


def attempt(ticket: Ticket, agent: Any) -> tuple[Message, Delivery, AttemptReport]:
    message = message_add(ticket=ticket, body="We are on it.", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    message.refresh_from_db()
    return message, delivery, report


def shown(delivery: Delivery, message: Message) -> list[str]:
    """Every text a person reads of the failure."""
    return [
        delivery.last_error,
        message.delivery_error,
        *delivery.attempt_log.values_list("error", flat=True),
    ]


@responses.activate
@pytest.mark.parametrize(
    ("code", "title", "details", "wait", "words"),
    [
        (
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached.",
            60.0,
            "Cloud API message throughput has been reached",
        ),
        (
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this "
            "phone number to the same phone number in a short period of time.",
            6.0,
            "too many messages sent from this phone number",
        ),
        (
            80007,
            "Rate limit issues",
            "The WhatsApp Business Account has reached its rate limit.",
            300.0,
            "reached its rate limit",
        ),
        (4, "Application request limit reached", "", 300.0, "Application request limit reached"),
    ],
)
def test_whatsapp_throttling_answered_400_is_retried_after_a_wait_and_pauses_the_account(
    ticket_on: Any, agent: Any, code: int, title: str, details: str, wait: float, words: str
) -> None:
    ticket = ticket_on("whatsapp")
    responses.post(WA_URL, status=400, json=wa_error(code, title, details))
    responses.post(WA_URL, json={"messages": [{"id": "wamid.LATER"}]})
    message, delivery, report = attempt(ticket, agent)
    assert (report.outcome, report.next_attempt_in) == ("throttled", wait)
    assert (delivery.status, delivery.error_code) == ("retrying", "whatsapp_rate_limited")
    assert list(delivery.attempt_log.values_list("outcome", "http_status")) == [("throttled", 400)]
    assert words in delivery.last_error
    assert f"WhatsApp error {code}: a rate limit" in delivery.last_error
    assert all('{"error"' not in text for text in shown(delivery, message))
    assert message.delivery_status == "queued"
    # the account is paused for the wait: nothing goes to WhatsApp before then
    circuit = Circuit.objects.get(target_kind="channel_reply")
    assert circuit.state == "open"
    assert circuit.open_until is not None
    assert abs((circuit.open_until - timezone.now()).total_seconds() - wait) < 5
    # the wait is over: the retry goes out and is taken
    past = timezone.now() - timedelta(seconds=1)
    Circuit.objects.update(open_until=past)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=past)
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.LATER")
    assert len(responses.calls) == 2


@responses.activate
@pytest.mark.parametrize(
    ("channel", "code", "text", "outcome", "error_code"),
    [
        (
            "messenger",
            613,
            "Calls to this api have exceeded the rate limit.",
            "throttled",
            "messenger_rate_limited",
        ),
        (
            "messenger",
            4,
            "(#4) Application request limit reached",
            "throttled",
            "messenger_rate_limited",
        ),
        (
            "messenger",
            1200,
            "Temporary send message failure. Please try again later",
            "retryable",
            "messenger_temporary_error",
        ),
        (
            "instagram",
            2,
            "An unexpected error has occurred. Please retry your request later.",
            "retryable",
            "instagram_temporary_error",
        ),
        (
            "instagram",
            32,
            "Page request limit reached",
            "throttled",
            "instagram_rate_limited",
        ),
    ],
)
def test_messenger_and_instagram_transient_errors_answered_400_are_retried(
    ticket_on: Any, agent: Any, channel: str, code: int, text: str, outcome: str, error_code: str
) -> None:
    ticket = ticket_on(channel)
    responses.post(URLS[channel], status=400, json=graph_error(code, text))
    message, delivery, report = attempt(ticket, agent)
    assert report.outcome == outcome
    assert (delivery.status, delivery.error_code) == ("retrying", error_code)
    assert text.removeprefix("(#4) ").rstrip(".") in delivery.last_error
    assert f"error {code}" in delivery.last_error
    assert all('{"error"' not in shown_text for shown_text in shown(delivery, message))


@responses.activate
@pytest.mark.parametrize("code", [131000, 131016, 133004, 1])
def test_whatsapp_temporary_errors_are_retried(ticket_on: Any, agent: Any, code: int) -> None:
    ticket = ticket_on("whatsapp")
    responses.post(
        WA_URL, status=400, json=wa_error(code, "Something went wrong", "Please try again.")
    )
    _, delivery, report = attempt(ticket, agent)
    assert report.outcome == "retryable"
    assert (delivery.status, delivery.error_code) == ("retrying", "whatsapp_temporary_error")


@responses.activate
def test_whatsapp_window_closed_is_a_dead_letter_in_the_projects_words(
    ticket_on: Any, agent: Any
) -> None:
    """WhatsApp refuses a reply outside its window (131047) although ours looked open
    (the customer's clock, a message we never saw): the refusal our own check gives."""
    ticket = ticket_on("whatsapp")
    responses.post(
        WA_URL,
        status=400,
        json=wa_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the "
            "customer last replied to this number.",
        ),
    )
    message, delivery, report = attempt(ticket, agent)
    assert report.outcome == "permanent"
    assert (delivery.status, delivery.attempts, delivery.error_code) == (
        "dead",
        1,
        "whatsapp_window_closed",
    )
    assert (message.delivery_status, message.delivery_error_code) == (
        "failed",
        "whatsapp_window_closed",
    )
    assert message.delivery_error == (
        "Not sent: the customer last wrote more than 24 hours ago, outside WhatsApp's "
        "customer-service window. Only an approved message template can be sent now. "
        "(WhatsApp error 131047)"
    )
    assert len(responses.calls) == 1


@responses.activate
def test_messenger_window_closed_subcode_is_a_dead_letter_in_words(
    ticket_on: Any, agent: Any
) -> None:
    ticket = ticket_on("messenger")
    responses.post(
        MESSENGER_URL,
        status=400,
        json=graph_error(
            10,
            "(#10) This message is sent outside of allowed window.",
            error_subcode=2018278,
        ),
    )
    message, delivery, _ = attempt(ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "messenger_window_closed")
    assert message.delivery_error.startswith("Not sent: the customer last wrote more than 24")
    assert message.delivery_error.endswith("(Messenger error 10/2018278)")


@responses.activate
def test_whatsapp_permission_error_is_permanent_and_says_who_must_act(
    ticket_on: Any, agent: Any
) -> None:
    ticket = ticket_on("whatsapp")
    responses.post(
        WA_URL,
        status=400,
        json=wa_error(
            3,
            "Capability or permissions issue.",
            "The app lacks the whatsapp_business_messaging permission.",
        ),
    )
    message, delivery, report = attempt(ticket, agent)
    assert report.outcome == "permanent"
    assert (delivery.status, delivery.error_code) == ("dead", "whatsapp_not_permitted")
    assert message.delivery_error == (
        "The app lacks the whatsapp_business_messaging permission (WhatsApp error 3: the "
        "channel account's token, permissions or setup; an administrator must fix it in "
        "Meta's settings)."
    )
    assert len(responses.calls) == 1


@responses.activate
def test_an_unknown_code_keeps_the_http_status_classification_in_words(
    ticket_on: Any, agent: Any
) -> None:
    ticket = ticket_on("whatsapp")
    responses.post(WA_URL, status=400, json=wa_error(100, "Invalid parameter", ""))
    message, delivery, report = attempt(ticket, agent)
    assert report.outcome == "permanent"
    assert (delivery.status, delivery.error_code) == ("dead", "http_400")
    assert message.delivery_error == "Invalid parameter (WhatsApp error 100, HTTP 400)."
    # the whole answer stays on the attempt, for staff
    answer = json.loads(delivery.attempt_log.get().response_summary)
    assert answer["error"]["code"] == 100


@responses.activate
def test_a_throttled_answer_waits_what_the_business_use_case_header_names(
    ticket_on: Any, agent: Any
) -> None:
    ticket = ticket_on("whatsapp")
    usage = {
        "102290129340398": [
            {"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 12}
        ]
    }
    responses.post(
        WA_URL,
        status=400,
        json=wa_error(80007, "Rate limit issues", "The account has reached its rate limit."),
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )
    _, _, report = attempt(ticket, agent)
    assert (report.outcome, report.next_attempt_in) == ("throttled", 720.0)


def test_provider_words_hide_credentials_and_are_bounded() -> None:
    from channels_app.adapters.base import provider_words

    token = "EAAGm0PX4ZCpsBA" + "x" * 180
    words = provider_words(f"Invalid OAuth access token {token} for access_token=abc123 ok")
    assert token not in words
    assert "abc123" not in words
    assert "[hidden]" in words
    assert len(provider_words("word " * 500)) <= 300
