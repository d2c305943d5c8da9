"""Meta's 24-hour window is counted from when the customer last wrote on the reply's own
channel (``channels_app.selectors.last_inbound_at``): by the customer's clock (the
payload's time, ``metadata.sent_at``), not when we received it, and never opened by a
message on another channel (an e-mail on the same ticket)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from django.utils import timezone

from channels_app import selectors, services
from channels_app.tests.conftest import make_account
from support.delivery import services as engine
from support.delivery.models import Delivery
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
CLOSED = (
    "Not sent: the customer last wrote more than 24 hours ago, outside WhatsApp's "
    "customer-service window. Only an approved message template can be sent now."
)


def send(ticket: Ticket, agent: Any) -> tuple[Message, Delivery]:
    message = message_add(ticket=ticket, body="Here is your answer.", author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    message.refresh_from_db()
    return message, delivery


def inbound(ticket: Ticket) -> Message:
    return Message.objects.get(ticket=ticket, direction="inbound")


@responses.activate
def test_a_message_received_now_but_written_long_ago_opens_no_window(
    post_fixture: Any, agent: Any
) -> None:
    """The fixture as recorded: the customer wrote in June 2025 (its ``timestamp``), we
    received it now. WhatsApp counts from when they wrote: refused before any request."""
    post_fixture(make_account("whatsapp"), "text_message", as_recorded=True)
    ticket = Ticket.objects.get()
    assert inbound(ticket).metadata["sent_at"].startswith("2025-06-08")
    responses.post(WA_URL, json={"messages": [{"id": "wamid.NEVER"}]})
    message, delivery = send(ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "whatsapp_window_closed")
    assert message.delivery_error == CLOSED
    assert len(responses.calls) == 0


@responses.activate
@pytest.mark.parametrize(("hours", "sent"), [(23, True), (25, False)])
def test_the_window_counts_from_the_customers_time(
    post_fixture: Any, agent: Any, hours: int, sent: bool
) -> None:
    post_fixture(make_account("whatsapp"), "text_message")
    ticket = Ticket.objects.get()
    written = timezone.now() - timedelta(hours=hours)
    Message.objects.filter(pk=inbound(ticket).pk).update(metadata={"sent_at": written.isoformat()})
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT"}]})
    _, delivery = send(ticket, agent)
    assert delivery.status == ("succeeded" if sent else "dead")
    assert len(responses.calls) == (1 if sent else 0)


@responses.activate
def test_an_email_from_the_customer_opens_no_whatsapp_window(post_fixture: Any, agent: Any) -> None:
    post_fixture(make_account("whatsapp"), "text_message")
    ticket = Ticket.objects.get()
    Message.objects.filter(ticket=ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(days=3)
    )
    message_add(
        ticket=ticket,
        body="(by e-mail) any news?",
        direction="inbound",
        author_customer=ticket.customer,
        channel="email",
    )
    responses.post(WA_URL, json={"messages": [{"id": "wamid.NEVER"}]})
    message, delivery = send(ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "whatsapp_window_closed")
    assert message.delivery_error == CLOSED
    assert len(responses.calls) == 0


def test_last_inbound_at_reads_the_customers_time_on_the_channel(post_fixture: Any) -> None:
    post_fixture(make_account("messenger"), "text_message")
    ticket = Ticket.objects.get()
    first = inbound(ticket)
    now = timezone.now()

    def add(sent_at: object, channel: str = "messenger") -> Message:
        metadata = {} if sent_at is None else {"sent_at": sent_at}
        return message_add(
            ticket=ticket,
            body="more",
            direction="inbound",
            author_customer=ticket.customer,
            channel=channel,
            metadata=metadata,
        )

    # received in order, written out of order (a webhook Meta delivered late)
    Message.objects.filter(pk=first.pk).update(
        metadata={"sent_at": (now - timedelta(hours=2)).isoformat()}
    )
    add((now - timedelta(hours=30)).isoformat())
    assert selectors.last_inbound_at(ticket) == datetime.fromisoformat(
        (now - timedelta(hours=2)).isoformat()
    )
    # unreadable: when we recorded it; ahead of our clock: no later than that either
    late = add("not a time")
    assert selectors.last_inbound_at(ticket) == late.created_at
    ahead = add((now + timedelta(hours=5)).isoformat())
    assert selectors.last_inbound_at(ticket) == ahead.created_at
    # another channel's message counts for that channel only
    mail = add(None, channel="email")
    assert selectors.last_inbound_at(ticket) == ahead.created_at
    assert selectors.last_inbound_at(ticket, "email") == mail.created_at
    assert selectors.last_inbound_at(ticket, "whatsapp") is None
    # a naive time is UTC
    Message.objects.filter(pk__in=[late.pk, ahead.pk, mail.pk]).delete()
    naive = (now - timedelta(hours=1)).astimezone(UTC).replace(tzinfo=None)
    Message.objects.filter(pk=first.pk).update(metadata={"sent_at": naive.isoformat()})
    assert selectors.last_inbound_at(ticket) == naive.replace(tzinfo=UTC)
