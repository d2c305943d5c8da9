"""Domain data the fault tests start from, and the counts they assert on."""

from __future__ import annotations

import hashlib

from django.db.models import Count
from django.test import Client
from django.utils import timezone

from channels_app import services as channel_services
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.tests.conftest import post_signed, wa_body
from tickets.models import Customer, Message, Ticket

WA_PHONE_ID = "106540352242922"  # make_account("whatsapp")'s external id


def sender(n: int) -> str:
    return f"3460000{n:04d}"


def whatsapp_tickets(account: ChannelAccount, count: int) -> list[Ticket]:
    """``count`` WhatsApp conversations (one inbound message each), processed in this
    process: replies to them are inside the 24-hour window."""
    client = Client()
    for n in range(count):
        body = wa_body(sender(n), f"wamid.in-{n:04d}", f"question {n}")
        assert post_signed(client, account, body).status_code == 200
    while channel_services.inbound_events_drain(account_id=account.pk).taken:
        pass
    tickets = list(Ticket.objects.order_by("pk"))
    assert len(tickets) == count
    return tickets


def queue_inbound(account: ChannelAccount, count: int, senders: int, first_sender: int = 0) -> None:
    """``count`` received, unprocessed WhatsApp deliveries (as intake stores them), from
    ``senders`` customers (numbered from ``first_sender``), inserted at once (no drain is
    woken)."""
    now = timezone.now()
    events = []
    for n in range(count):
        body = wa_body(sender(first_sender + n % senders), f"wamid.q-{n:05d}", f"message {n}")
        events.append(
            InboundEvent(
                channel=account.channel,
                account=account,
                external_id=hashlib.sha256(body).hexdigest(),
                headers={"content-type": "application/json"},
                body=body,
                status=InboundStatus.RECEIVED,
                received_at=now,
            )
        )
    InboundEvent.objects.bulk_create(events, batch_size=500)


def processed() -> int:
    return InboundEvent.objects.filter(status=InboundStatus.PROCESSED).count()


def assert_inbound_exactly_once(*, events: int, senders: int) -> None:
    """Every delivery processed; one message per delivery, one ticket and one customer per
    sender: nothing lost, nothing created twice."""
    statuses = dict(
        InboundEvent.objects.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    assert statuses == {InboundStatus.PROCESSED: events}
    inbound = Message.objects.filter(direction="inbound")
    assert inbound.count() == events
    assert inbound.values("channel_message_id").distinct().count() == events
    assert Ticket.objects.count() == senders
    assert Customer.objects.count() == senders
