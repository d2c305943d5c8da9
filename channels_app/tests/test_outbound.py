"""Replies: exactly one request with the right body, retries on 5xx/429, dead letters on
4xx, the WhatsApp 24-hour window, internal notes never sent. HTTP mocked with responses."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.utils import timezone

from channels_app import services
from channels_app.tests.conftest import counts, diff, make_account
from support.delivery import services as engine
from support.delivery.models import Attempt, Circuit, Delivery
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    return Ticket.objects.get()


def reply(
    ticket: Ticket,
    agent: Any,
    capture: Any,
    text: str = "Yes, it comes in blue.",
    kind: str = "public",
) -> Message:
    with capture(execute=True):
        return message_add(ticket=ticket, body=text, author_user=agent, kind=kind)


@responses.activate
def test_whatsapp_reply_makes_exactly_one_request_with_the_right_body(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(
        WA_URL,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.SENT-0001"}],
        },
        match=[responses.matchers.header_matcher({"Authorization": "Bearer test-access-token"})],
    )
    before = counts()
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 1
    assert json.loads(responses.calls[0].request.body or b"") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"preview_url": False, "body": "Yes, it comes in blue."},
    }
    assert diff(before, counts()) == {"messages": 1, "deliveries": 1, "attempts": 1}
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.SENT-0001")
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.idempotency_key) == (
        "channel_reply",
        f"message:{message.pk}",
    )
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("succeeded", 1, 200)
    assert (delivery.lease_owner, delivery.lease_until) == ("", None)
    attempt = Attempt.objects.get()
    assert (attempt.outcome, attempt.http_status) == ("success", 200)


@responses.activate
def test_500_then_200_gives_one_delivered_message_with_two_recorded_attempts(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(
        WA_URL,
        status=500,
        json={"error": {"message": "Service temporarily unavailable", "code": 2}},
    )
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-0002"}]})
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 2
    assert responses.calls[0].request.body == responses.calls[1].request.body
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.SENT-0002")
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert list(delivery.attempt_log.values_list("outcome", "http_status")) == [
        ("retryable", 500),
        ("success", 200),
    ]
    assert (
        Message.objects.filter(ticket=wa_ticket, direction="outbound", kind="public").count() == 1
    )


@responses.activate
def test_429_honours_retry_after_for_the_reply_and_its_account(
    wa_ticket: Ticket, agent: Any
) -> None:
    responses.post(WA_URL, status=429, headers={"Retry-After": "120"}, json={})
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-0003"}]})
    message = message_add(ticket=wa_ticket, body="Hello", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert report.outcome == "throttled"
    assert report.next_attempt_in is not None
    assert 120 <= report.next_attempt_in <= 900
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("retrying", 1, 429)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=119)
    # The account said when to come back: its circuit holds every reply until then.
    circuit = Circuit.objects.get(target_kind="channel_reply", target_key=delivery.target_key)
    assert circuit.state == "open"
    assert circuit.open_until is not None
    assert circuit.open_until >= timezone.now() + timedelta(seconds=119)
    # a duplicate task message for attempt 1 finds it taken and does nothing
    assert not engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0).claimed
    # the scheduled retry arriving early (eager Celery) is held back by the circuit
    held = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=1)
    assert (held.claimed, held.paused_until) == (False, circuit.open_until)
    assert len(responses.calls) == 1
    # Retry-After has passed: the retry is the probe, and it closes the circuit.
    past = timezone.now() - timedelta(seconds=1)
    Circuit.objects.filter(pk=circuit.pk).update(open_until=past)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=past)
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert len(responses.calls) == 2
    assert Circuit.objects.get(pk=circuit.pk).state == "closed"


@responses.activate
def test_4xx_is_a_dead_letter_without_retry(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(
        WA_URL, status=400, json={"error": {"message": "(#100) Invalid parameter", "code": 100}}
    )
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("dead", 1, "http_400")
    assert list(delivery.attempt_log.values_list("outcome", "http_status")) == [("permanent", 400)]
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "http_400")
    assert "Invalid parameter" in message.delivery_error


@responses.activate
@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        # a "message id" padded past 1 MiB: cut off as it is read
        (
            {"json": {"messages": [{"id": "wamid." + "x" * (2 * 1024 * 1024)}]}},
            "over 1048576 bytes",
        ),
        # a Content-Length over the cap: refused before the body is read
        (
            {
                "json": {"messages": [{"id": "wamid.SENT"}]},
                "headers": {"Content-Length": str(64 * 1024 * 1024)},
            },
            f"is {64 * 1024 * 1024} bytes",
        ),
    ],
)
def test_an_over_large_send_answer_is_never_read_whole_and_the_reply_counts_as_sent(
    wa_ticket: Ticket,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    answer: dict[str, Any],
    refusal: str,
) -> None:
    """A vendor answer past 1 MiB (http_call's cap; a send's answer is a few hundred bytes)
    is not read whole into the worker's memory and no message id is taken from it. Its
    2xx status says the reply was taken: a success with no message id, not sent again
    (before 2026-12-07 a dead letter, and the agent was told a reply the customer had
    failed)."""
    responses.post(WA_URL, status=200, **answer)
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.external_id) == ("succeeded", 1, "")
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.http_status, attempt.error_code) == (
        "success",
        200,
        "no_message_id",
    )
    assert refusal in attempt.response_summary
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", None)


@responses.activate
def test_retries_are_bounded_then_dead_letter_and_redrive(
    wa_ticket: Ticket, agent: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CHANNELS_OUTBOUND_MAX_ATTEMPTS = 3
    responses.post(WA_URL, status=503, json={})
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 3
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("dead", 3)
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert message.delivery_error.startswith("Gave up after 3 attempts")

    responses.replace(responses.POST, WA_URL, json={"messages": [{"id": "wamid.REDRIVEN"}]})
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.delivery_redrive(delivery_ids=[delivery.pk], actor=agent) == 1
        message.refresh_from_db()
        assert message.delivery_status == "queued"
    delivery.refresh_from_db()
    message.refresh_from_db()
    assert (delivery.status, delivery.attempt_log.count()) == ("succeeded", 4)
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.REDRIVEN")


@responses.activate
def test_whatsapp_reply_outside_the_24_hour_window_is_refused_with_a_clear_error(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Message.objects.filter(ticket=wa_ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 0
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == (
        "failed",
        "whatsapp_window_closed",
    )
    assert "template" in message.delivery_error
    assert Delivery.objects.get().status == "dead"


@responses.activate
def test_internal_notes_are_never_sent(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    before = counts()
    reply(wa_ticket, agent, django_capture_on_commit_callbacks, kind="internal_note")
    assert len(responses.calls) == 0
    assert diff(before, counts()) == {"messages": 1}


@responses.activate
def test_statuses_out_of_order_never_downgrade(
    wa_ticket: Ticket, agent: Any, post_fixture: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.OUTBOUND-FIXTURE-0001"}]})
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    account = wa_ticket.channel_account_id
    from channels_app.models import ChannelAccount

    acc = ChannelAccount.objects.get(pk=account)
    post_fixture(acc, "status_read")
    post_fixture(acc, "status_delivered")
    post_fixture(acc, "status_sent")
    message.refresh_from_db()
    assert message.delivery_status == "read"
    assert message.read_at is not None
    assert message.delivered_at is not None


@responses.activate
def test_failed_status_carries_the_channel_error_code(
    wa_ticket: Ticket, agent: Any, post_fixture: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from channels_app.models import ChannelAccount

    responses.post(WA_URL, json={"messages": [{"id": "wamid.OUTBOUND-FIXTURE-0001"}]})
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    post_fixture(ChannelAccount.objects.get(pk=wa_ticket.channel_account_id), "status_failed")
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "131047")
    assert message.delivery_error == "Re-engagement message"


def test_status_for_an_unknown_message_is_kept_for_retry(post_fixture: Any) -> None:
    account = make_account("whatsapp")
    before = counts()
    post_fixture(account, "status_delivered")
    assert diff(before, counts()) == {"events": 1}
    from channels_app.models import InboundEvent

    event = InboundEvent.objects.get()
    assert (event.status, event.attempts) == ("retrying", 1)
    assert "not recorded yet" in event.error


@responses.activate
def test_messenger_reply_and_delivery_watermark(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("messenger")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    responses.post(
        "https://graph.facebook.com/v21.0/me/messages",
        json={"recipient_id": "6789012345678901", "message_id": "m_OUTBOUND_FIXTURE_0001"},
    )
    message = reply(ticket, agent, django_capture_on_commit_callbacks, text="On its way!")
    assert json.loads(responses.calls[0].request.body or b"") == {
        "recipient": {"id": "6789012345678901"},
        "messaging_type": "RESPONSE",
        "message": {"text": "On its way!"},
    }
    post_fixture(account, "delivery")
    message.refresh_from_db()
    assert message.delivery_status == "delivered"


@responses.activate
def test_instagram_reply_uses_the_graph_api_send_shape(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Instagram messaging Send API: POST /<IG account id>/messages with a Bearer token,
    ``{"recipient": {"id": IGSID}, "message": {"text": ...}}``; the answer names the message
    (``{"recipient_id", "message_id"}``)."""
    account = make_account("instagram")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    responses.post(
        "https://graph.facebook.com/v21.0/17841405822304914/messages",
        json={"recipient_id": "1784145963457001", "message_id": "aWdfZAG1faXRlbToxOklHTWVzc2FnZA"},
        match=[responses.matchers.header_matcher({"Authorization": "Bearer test-access-token"})],
    )
    before = counts()
    message = reply(ticket, agent, django_capture_on_commit_callbacks, text="Back on Friday!")
    assert len(responses.calls) == 1
    assert json.loads(responses.calls[0].request.body or b"") == {
        "recipient": {"id": "1784145963457001"},
        "message": {"text": "Back on Friday!"},
    }
    assert responses.calls[0].request.headers["Content-Type"] == "application/json"
    assert diff(before, counts()) == {"messages": 1, "deliveries": 1, "attempts": 1}
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == (
        "sent",
        "aWdfZAG1faXRlbToxOklHTWVzc2FnZA",
    )


@responses.activate
def test_x_reply_uses_the_dm_api_v2(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("twitter")
    post_fixture(account, "dm_message_create")
    ticket = Ticket.objects.get()
    responses.post(
        "https://api.x.com/2/dm_conversations/with/4337869213/messages",
        status=201,
        json={
            "data": {
                "dm_conversation_id": "3001969357-4337869213",
                "dm_event_id": "1700000000000000001",
            }
        },
    )
    message = reply(ticket, agent, django_capture_on_commit_callbacks, text="Sorry! Checking now.")
    assert json.loads(responses.calls[0].request.body or b"") == {"text": "Sorry! Checking now."}
    message.refresh_from_db()
    assert message.channel_message_id == "1700000000000000001"
    post_fixture(account, "mark_read")
    message.refresh_from_db()
    assert message.delivery_status == "read"


@responses.activate
def test_email_reply_threads_with_in_reply_to_and_the_customer_reply_threads_back(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test", "from_name": "Acme Support"}
    account.save()
    post_fixture(account, "inbound_parse_new")
    ticket = Ticket.objects.get()
    responses.post(
        "https://api.sendgrid.com/v3/mail/send", status=202, headers={"X-Message-Id": "sg-abc"}
    )
    message = reply(ticket, agent, django_capture_on_commit_callbacks, text="Sorry! Refund?")
    sent = json.loads(responses.calls[0].request.body or b"")
    our_id = (
        f"<reply-{message.pk}.{ticket.correlation_id}@{settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN}>"
    )
    assert sent == {
        "personalizations": [{"to": [{"email": "jane.doe@example.org"}]}],
        "from": {"email": "support@acme.test", "name": "Acme Support"},
        "subject": f"Re: Order 1234 arrived broken [{ticket.number}]",
        "content": [{"type": "text/plain", "value": "Sorry! Refund?"}],
        "headers": {
            "Message-ID": our_id,
            "In-Reply-To": "<CAHqs2r1ExampleFirst@mail.example.org>",
            "References": "<CAHqs2r1ExampleFirst@mail.example.org>",
        },
        "custom_args": {"ticket_id": str(ticket.pk), "message_id": str(message.pk)},
    }
    message.refresh_from_db()
    assert message.channel_message_id == our_id
    before = counts()
    post_fixture(account, "inbound_parse_reply")
    assert diff(before, counts()) == {"messages": 1, "events": 1}
    customer_reply = Message.objects.latest("id")
    assert customer_reply.ticket == ticket
    assert customer_reply.body_text == "Thanks, a refund works for me."


@responses.activate
def test_webchat_reply_is_pushed_and_delivered(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from unittest import mock

    account = make_account("webchat")
    post_fixture(account, "visitor_message")
    ticket = Ticket.objects.get()
    with mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer") as layer:
        layer.return_value.group_send = mock.AsyncMock()
        message = reply(ticket, agent, django_capture_on_commit_callbacks, text="Sure!")
    layer.return_value.group_send.assert_awaited_once_with(
        "webchat-v_fixture0001",
        {
            "type": "webchat.message",
            "message": {"id": message.pk, "from": "agent", "text": "Sure!", "files": []},
        },
    )
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    assert len(responses.calls) == 0


def test_reply_on_a_channel_without_account_fails_visibly(
    customer: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from tickets.services import ticket_create

    ticket = ticket_create(customer=customer, subject="Hi", body="Hello", channel="whatsapp")
    message = reply(ticket, agent, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "no_account")
    assert Delivery.objects.count() == 0


@responses.activate
def test_echo_recorded_before_the_send_result_does_not_break_the_delivery(
    post_fixture: Any, agent: Any
) -> None:
    from channels_app.models import ChannelAccount

    account = make_account("messenger")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    message = message_add(ticket=ticket, body="Sent via API", author_user=agent)
    # Meta's echo of our own send arrives (and is processed) before our send task commits
    from unittest import mock

    with mock.patch("channels_app.services.outbound_wanted", return_value=False):
        post_fixture(account, "echo")
    assert Message.objects.filter(channel_message_id="m_ECHO_FIXTURE_0001").count() == 1
    responses.post(
        "https://graph.facebook.com/v21.0/me/messages",
        json={"recipient_id": "6789012345678901", "message_id": "m_ECHO_FIXTURE_0001"},
    )
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    delivery.refresh_from_db()
    message.refresh_from_db()
    assert (delivery.status, delivery.external_id) == ("succeeded", "m_ECHO_FIXTURE_0001")
    assert (message.delivery_status, message.channel_message_id) == ("sent", None)
    assert ChannelAccount.objects.count() == 1


def test_echo_of_our_own_app_is_skipped(post_fixture: Any) -> None:
    account = make_account("messenger")
    account.settings = {"app_id": "1517776481860111"}
    account.save()
    post_fixture(account, "text_message")
    before = counts()
    post_fixture(account, "echo")
    assert diff(before, counts()) == {"events": 1}


@responses.activate
def test_a_reply_whose_first_task_was_lost_is_sent_by_the_sweep(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT"}]})
    message = message_add(ticket=wa_ticket, body="Hello", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)  # no commit: lost
    assert delivery is not None
    assert len(responses.calls) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep() == 0  # within the grace its own task may still come
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep() == 1
    assert len(responses.calls) == 1
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.SWEPT")
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep() == 0


SENDGRID = "https://api.sendgrid.com/v3/mail/send"


@responses.activate
@pytest.mark.parametrize("channel", ["api", "phone"])
def test_a_reply_on_an_api_or_phone_ticket_is_emailed_to_the_customer(
    channel: str, customer: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Those channels have no way back but the customer's e-mail: the reply goes through
    the e-mail account, recorded like every outbound attempt, instead of staying queued."""
    from tickets.services import ticket_create

    email = make_account("email")
    ticket = ticket_create(customer=customer, subject="Order 77", body="Hi", channel=channel)
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    message = reply(ticket, agent, django_capture_on_commit_callbacks, text="It ships today.")
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body or b"")
    assert sent["personalizations"] == [{"to": [{"email": "ada@example.com"}]}]
    assert sent["subject"] == f"Re: Order 77 [{ticket.number}]"
    delivery = Delivery.objects.get()
    assert (delivery.target_key, delivery.status) == (f"email:{email.pk}", "succeeded")
    assert Attempt.objects.filter(delivery=delivery).count() == 1
    message.refresh_from_db()
    assert (message.channel, message.delivery_status) == (channel, "sent")


def test_a_reply_with_no_way_to_reach_the_customer_fails_visibly(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A phone ticket of a customer without e-mail: marked failed with the reason at once
    (shown on the ticket page), never "Queued" forever; nothing is enqueued."""
    from tickets.models import Customer
    from tickets.services import ticket_create

    make_account("email")
    caller = Customer.objects.create(name="Caller", phone="+447700900123")
    ticket = ticket_create(customer=caller, subject="Call", body="Called", channel="phone")
    message = reply(ticket, agent, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "no_channel")
    assert message.delivery_error.startswith("No channel to reach this customer")
    assert Delivery.objects.count() == 0
    client.force_login(agent)
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert "Failed: No channel to reach this customer" in page


def test_an_api_reply_without_an_email_account_fails_visibly(
    customer: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from tickets.services import ticket_create

    ticket = ticket_create(customer=customer, subject="Hi", body="Hello", channel="api")
    message = reply(ticket, agent, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "no_account")


@responses.activate
def test_an_api_ticket_never_messages_the_number_its_creator_wrote(
    customer: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """``origin_platform_id`` on a ticket made through the API is the caller's own id or a
    claim: a reply never goes to it (before: a WhatsApp message from the company's number
    to whatever number the creator wrote). It goes to the customer's own identity on the
    channel, and fails visibly when there is none."""
    from tickets.services import channel_identity_link, ticket_create

    make_account("whatsapp")
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-0002"}]})
    ticket = ticket_create(
        customer=customer,
        subject="Hi",
        body="Hello",
        channel="whatsapp",
        origin_platform_id="15550009999",
        created_by=agent,
    )
    message = reply(ticket, agent, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert "no whatsapp identity" in message.delivery_error
    assert len(responses.calls) == 0

    channel_identity_link(customer=customer, channel="whatsapp", external_id="16505550000")
    message = reply(ticket, agent, django_capture_on_commit_callbacks)
    assert [json.loads(c.request.body or b"")["to"] for c in responses.calls] == ["16505550000"]
