"""A reply still waiting to go out (queued, retrying, behind a paused account) when its
ticket is merged into another customer's: it goes to the person it was written for, or
fails in words, never to the other customer (docs/channels.md#replies-and-merges)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from channels_app import services
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from support.delivery import services as engine
from support.delivery.models import Attempt, Delivery
from tickets.models import Customer, Message, Ticket
from tickets.services import (
    channel_identity_link,
    customer_merge,
    message_add,
    ticket_create,
    ticket_merge,
)

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"


@pytest.fixture
def alice() -> Customer:
    return Customer.objects.create(name="Alice", email="alice@example.org")


@pytest.fixture
def bob() -> Customer:
    return Customer.objects.create(name="Bob", email="bob@example.org")


def channel_ticket(
    customer: Customer, account: ChannelAccount, sender: str, subject: str
) -> Ticket:
    """A ticket the channel account received from ``sender`` (as the intake makes it)."""
    channel_identity_link(customer=customer, channel=account.channel, external_id=sender)
    return ticket_create(
        customer=customer,
        subject=subject,
        body="Hello",
        channel=account.channel,
        channel_account_id=str(account.pk),
        origin_platform_id=sender,
    )


def queued_reply(ticket: Ticket, agent: Any, text: str = "Your refund is on its way.") -> Delivery:
    """An agent's reply whose delivery is enqueued but not yet sent (no commit callbacks
    run: the first attempt waits, as behind a retry or a paused account)."""
    message = message_add(ticket=ticket, body=text, author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    return delivery


def attempt(delivery: Delivery) -> Message:
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    return Message.objects.get(pk=delivery.payload["message_id"])


def sent_to_email() -> list[str]:
    return [
        to["email"]
        for call in responses.calls
        for p in json.loads(call.request.body or b"")["personalizations"]
        for to in p["to"]
    ]


@responses.activate
def test_an_email_reply_queued_before_a_cross_customer_merge_goes_to_its_customer(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    account = make_account("email")
    mine = channel_ticket(alice, account, "alice@example.org", "Refund for order 1")
    theirs = channel_ticket(bob, account, "bob@example.org", "Where is order 2")
    Message.objects.create(
        ticket=theirs,
        direction="inbound",
        channel="email",
        body_text="Any news?",
        channel_message_id="<bob-1@mail.example.org>",
    )
    Message.objects.create(
        ticket=mine,
        direction="inbound",
        channel="email",
        body_text="Hello",
        channel_message_id="<alice-1@mail.example.org>",
    )
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)

    message = attempt(delivery)

    assert sent_to_email() == ["alice@example.org"]
    sent = json.loads(responses.calls[0].request.body or b"")
    # her thread and her ticket's subject, not the other customer's
    assert sent["subject"] == f"Re: Refund for order 1 [{mine.number}]"
    assert sent["headers"]["References"] == "<alice-1@mail.example.org>"
    assert (delivery.status, message.delivery_status) == ("succeeded", "sent")


@responses.activate
def test_an_email_reply_enqueued_after_a_cross_customer_merge_goes_to_its_customer(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    """The merge came between the reply and its enqueue (the outbox was slow)."""
    account = make_account("email")
    mine = channel_ticket(alice, account, "alice@example.org", "Refund")
    theirs = channel_ticket(bob, account, "bob@example.org", "Order")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    message = message_add(ticket=mine, body="Refunded.", author_user=agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None

    attempt(delivery)

    assert sent_to_email() == ["alice@example.org"]


@responses.activate
def test_a_whatsapp_reply_queued_before_a_cross_customer_merge_goes_to_its_customer(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    account = make_account("whatsapp")
    mine = channel_ticket(alice, account, "16505550001", "WhatsApp")
    theirs = channel_ticket(bob, account, "16505550002", "WhatsApp")
    responses.post(WA_URL, json={"messages": [{"id": "wamid.ALICE"}]})
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)

    message = attempt(delivery)

    # her number, and her own last message opens the 24-hour window
    assert [json.loads(c.request.body or b"")["to"] for c in responses.calls] == ["16505550001"]
    assert (delivery.status, message.delivery_status) == ("succeeded", "sent")


@responses.activate
def test_a_reply_to_an_identity_that_a_merge_moved_to_another_customer_fails_in_words(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    """An API-made WhatsApp ticket is answered on the customer's identity; the merge moved
    Alice's identity to Bob: Bob's number is never messaged, the reply fails for good."""
    account = make_account("whatsapp")
    channel_identity_link(customer=alice, channel="whatsapp", external_id="16505550001")
    mine = ticket_create(customer=alice, subject="Hi", body="Hello", channel="whatsapp")
    theirs = channel_ticket(bob, account, "16505550002", "WhatsApp")
    Message.objects.create(ticket=mine, direction="inbound", channel="whatsapp", body_text="Hi")
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)

    message = attempt(delivery)

    assert len(responses.calls) == 0
    assert (delivery.status, delivery.error_code) == ("dead", "no_identity")
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "no_identity")
    assert message.delivery_error == (
        "The customer has no whatsapp identity to reply to. This reply was written on "
        f"{mine.number} before it was merged into {theirs.number}; a merge into another "
        "customer's ticket moves the identities. Not sent to anyone else."
    )
    assert list(Attempt.objects.values_list("outcome", "error_code")) == [
        ("permanent", "no_identity")
    ]


@responses.activate
def test_an_api_ticket_reply_is_emailed_to_its_customer_after_a_cross_customer_merge(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    make_account("email")
    mine = ticket_create(customer=alice, subject="Order 77", body="Hi", channel="api")
    theirs = ticket_create(customer=bob, subject="Order 78", body="Hi", channel="api")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)

    attempt(delivery)

    assert sent_to_email() == ["alice@example.org"]


@responses.activate
def test_a_customer_merge_after_the_reply_was_queued_is_followed(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    """A customer merge (not a ticket merge) says the two records are one person (a web
    chat guest verifying its address, a hand-off guest checked by an agent): the reply
    goes to the merged customer, as every later reply does."""
    make_account("email")
    mine = ticket_create(customer=alice, subject="Order 77", body="Hi", channel="api")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    delivery = queued_reply(mine, agent)
    customer_merge(source=alice, target=bob, actor=supervisor, reason="same person")

    message = attempt(delivery)

    assert sent_to_email() == ["bob@example.org"]
    assert message.delivery_status == "sent"


@responses.activate
def test_a_reply_to_a_customer_erased_after_a_merge_fails_in_words(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    from tickets.context.privacy import customer_erase

    account = make_account("email")
    mine = channel_ticket(alice, account, "alice@example.org", "Refund")
    theirs = channel_ticket(bob, account, "bob@example.org", "Order")
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)
    customer_erase(customer=alice, actor=supervisor, via="test")

    message = attempt(delivery)

    assert len(responses.calls) == 0
    assert (delivery.status, delivery.error_code) == ("dead", "customer_erased")
    assert (message.delivery_status, message.delivery_error_code) == (
        "failed",
        "customer_erased",
    )
    assert "was erased" in message.delivery_error


@responses.activate
def test_a_reply_whose_ticket_was_deleted_after_a_merge_fails_in_words(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    account = make_account("email")
    mine = channel_ticket(alice, account, "alice@example.org", "Refund")
    theirs = channel_ticket(bob, account, "bob@example.org", "Order")
    delivery = queued_reply(mine, agent)
    ticket_merge(source=mine, target=theirs, actor=supervisor)
    Ticket.objects.filter(pk=mine.pk).delete()

    message = attempt(delivery)

    assert len(responses.calls) == 0
    assert (delivery.status, message.delivery_status) == ("dead", "failed")
    assert message.delivery_error_code == "recipient_unknown"


@responses.activate
def test_a_reply_queued_before_a_same_customer_merge_still_goes_to_that_customer(
    alice: Customer, agent: Any, supervisor: Any
) -> None:
    account = make_account("email")
    first = channel_ticket(alice, account, "alice@example.org", "Refund")
    second = channel_ticket(alice, account, "alice@example.org", "Refund again")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    delivery = queued_reply(first, agent)
    ticket_merge(source=first, target=second, actor=agent)

    message = attempt(delivery)

    assert sent_to_email() == ["alice@example.org"]
    assert (delivery.status, message.delivery_status) == ("succeeded", "sent")


@responses.activate
def test_a_whatsapp_reply_queued_before_a_same_customer_merge_still_goes_to_that_customer(
    alice: Customer, agent: Any
) -> None:
    account = make_account("whatsapp")
    first = channel_ticket(alice, account, "16505550001", "WhatsApp")
    second = channel_ticket(alice, account, "16505550001", "WhatsApp again")
    responses.post(WA_URL, json={"messages": [{"id": "wamid.ALICE"}]})
    delivery = queued_reply(first, agent)
    ticket_merge(source=first, target=second, actor=agent)

    message = attempt(delivery)

    assert [json.loads(c.request.body or b"")["to"] for c in responses.calls] == ["16505550001"]
    assert message.delivery_status == "sent"


def test_a_webchat_reply_queued_before_a_cross_customer_merge_goes_to_its_visitor(
    alice: Customer, bob: Customer, agent: Any, supervisor: Any
) -> None:
    from unittest import mock

    account = make_account("webchat")
    mine = channel_ticket(alice, account, "v_alice", "Web chat")
    theirs = channel_ticket(bob, account, "v_bob", "Web chat")
    for ticket, visitor in ((mine, "v_alice"), (theirs, "v_bob")):
        Message.objects.create(
            ticket=ticket,
            direction="inbound",
            channel="webchat",
            body_text="Hello?",
            channel_message_id=f"{visitor}:m1",
        )
    delivery = queued_reply(mine, agent, text="Sure!")
    ticket_merge(source=mine, target=theirs, actor=supervisor)

    with mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer") as layer:
        layer.return_value.group_send = mock.AsyncMock()
        message = attempt(delivery)

    [pushed] = layer.return_value.group_send.await_args_list
    assert pushed.args[0] == "webchat-v_alice"
    assert message.delivery_status == "delivered"
