"""A drain applies runs of plain messages together; the outcome must be exactly what the
one-by-one path gives for the same deliveries (tickets, messages, order, status changes,
events, search vectors), and a failing run falls back to one by one."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app import services
from channels_app.adapters.base import WebhookRequest
from channels_app.models import InboundEvent
from channels_app.services import bulk, drain
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.models import OutboxEvent
from tickets import services as ticket_services
from tickets.models import ChannelIdentity, Message, Ticket

pytestmark = pytest.mark.django_db


def _delivery(items: list[dict[str, Any]], statuses: list[dict[str, Any]] | None = None) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "106540352242922"},
    }
    if items:
        value["contacts"] = [
            {"profile": {"name": f"Sender {m['from']}"}, "wa_id": m["from"]} for m in items
        ]
        value["messages"] = items
    if statuses:
        value["statuses"] = statuses
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload).encode()


def _text(sender: str, mid: str, text: str) -> dict[str, Any]:
    return {
        "from": sender,
        "id": mid,
        "timestamp": "1717880000",
        "type": "text",
        "text": {"body": text},
    }


def _receive(account: Any, body: bytes) -> None:
    signature = "sha256=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    services.inbound_receive(
        account=account,
        request=WebhookRequest(
            headers={"x-hub-signature-256": signature, "content-type": "application/json"},
            body=body,
        ),
    )


def _scenario() -> Any:
    """Known customer with a pending ticket, a new sender writing twice, a redelivered
    message id, and a status delivery in the middle (which ends a bulk run)."""
    account = make_account("whatsapp")
    known = ticket_services.customer_get_or_create(email="", name="Known", phone="")[0]
    ChannelIdentity.objects.create(customer=known, channel="whatsapp", external_id="111")
    pending = ticket_services.ticket_create(
        customer=known,
        subject="Earlier question",
        body="first words",
        channel="whatsapp",
        channel_account_id=str(account.pk),
        channel_message_id="wamid.old",
    )
    Ticket.objects.filter(pk=pending.pk).update(status="pending")
    OutboxEvent.objects.all().delete()
    deliveries = [
        _delivery([_text("111", "wamid.1", "still waiting for the refund")]),
        _delivery([_text("222", "wamid.2", "hello, parcel lost")]),
        _delivery([], statuses=[{"id": "wamid.unknown", "status": "read", "timestamp": "1"}]),
        _delivery([_text("222", "wamid.3", "tracking number is ZX9")]),
        _delivery([_text("111", "wamid.old", "first words")]),  # already recorded
        _delivery([_text("333", "wamid.4", "")]),  # empty text
    ]
    for body in deliveries:
        _receive(account, body)
    return account


def _snapshot() -> dict[str, Any]:
    tickets = [
        (t.customer.name, t.subject, t.status, t.waiting_since is not None, t.resolved_at)
        for t in Ticket.objects.select_related("customer").order_by("id")
    ]
    messages = [
        (m.ticket.subject, m.channel_message_id, m.body_text, str(m.author_customer))
        for m in Message.objects.select_related("ticket", "author_customer").order_by("id")
    ]
    events = [
        (
            e.event_type,
            e.payload.get("status"),
            e.payload.get("changes"),
            e.payload.get("preview"),
        )
        for e in OutboxEvent.objects.order_by("id")
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT subject, search_vector::text FROM tickets_ticket ORDER BY id")
        vectors = cursor.fetchall()
    outcomes = [
        (e.status, e.summary.get("created_messages"), e.summary.get("duplicates"))
        for e in InboundEvent.objects.order_by("id")
    ]
    return {
        "tickets": tickets,
        "messages": messages,
        "events": events,
        "vectors": vectors,
        "outcomes": outcomes,
    }


def _drain(account: Any) -> None:
    while services.inbound_events_drain(account_id=account.pk).taken:
        pass


def test_bulk_drain_gives_exactly_the_one_by_one_outcome() -> None:
    account = _scenario()
    with (
        mock.patch.object(drain, "_message_is_plain", return_value=False),
        CaptureQueriesContext(connection) as single_queries,
    ):
        _drain(account)
    one_by_one = _snapshot()
    Message.objects.all().delete()
    Ticket.objects.all().delete()
    OutboxEvent.objects.all().delete()
    InboundEvent.objects.all().delete()
    ChannelIdentity.objects.all().delete()

    account = _scenario()
    with CaptureQueriesContext(connection) as queries:
        _drain(account)
    bulk = _snapshot()
    assert bulk == one_by_one
    assert bulk["tickets"][0][2] == "open"  # the pending ticket was reopened
    assert [m[1] for m in bulk["messages"]] == [
        "wamid.old",
        "wamid.1",
        "wamid.2",
        "wamid.3",
        "wamid.4",
    ]
    assert "zx9" in bulk["vectors"][1][1]  # the new ticket's vector has its 2nd message
    assert len(queries) < len(single_queries)


def test_a_failing_bulk_run_falls_back_to_one_by_one() -> None:
    account = _scenario()
    with mock.patch.object(bulk, "ids_reserve", side_effect=RuntimeError("boom")) as ids:
        # ticket creation one by one reserves ids through tickets.services, not this name
        _drain(account)
    assert ids.called
    assert Message.objects.filter(channel_message_id__startswith="wamid.").count() == 5
    statuses = list(InboundEvent.objects.order_by("id").values_list("status", flat=True))
    # the status for a message we never sent waits for a retry, as always
    assert statuses == ["processed", "processed", "retrying", "processed", "processed", "processed"]
