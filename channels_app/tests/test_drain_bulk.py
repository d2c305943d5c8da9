"""A drain applies runs of plain messages together; the outcome must be exactly what the
one-by-one path gives for the same deliveries (tickets, messages, order, status changes,
events, search vectors), and a failing run falls back to one by one."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

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


WAITING_SINCE = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # a customer waiting for long


def _known(account: Any, sender: str, name: str, **ticket: Any) -> None:
    """A customer of ``sender`` with one ticket on the account, in the state given."""
    customer = ticket_services.customer_get_or_create(email="", name=name, phone="")[0]
    ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id=sender)
    created = ticket_services.ticket_create(
        customer=customer,
        subject=f"{name}'s earlier question",
        body="first words",
        channel="whatsapp",
        channel_account_id=str(account.pk),
        channel_message_id=f"wamid.old.{sender}",
    )
    Ticket.objects.filter(pk=created.pk).update(**ticket)


def _scenario() -> Any:
    """Known customers whose tickets are pending, resolved within the reopen window,
    resolved before it, closed, open and answered (not waiting), open and waiting; a new
    sender writing twice; a redelivered message id; a status delivery in the middle
    (which ends a bulk run)."""
    account = make_account("whatsapp")
    window = timedelta(hours=settings.CHANNEL_REOPEN_WINDOW_HOURS)
    now = timezone.now()
    _known(account, "111", "Known", status="pending")
    _known(account, "444", "Recent", status="resolved", resolved_at=now - timedelta(hours=1))
    _known(account, "555", "Late", status="resolved", resolved_at=now - window - timedelta(hours=1))
    _known(account, "666", "Answered", status="open", waiting_since=None)
    _known(account, "777", "Waiting", status="open", waiting_since=WAITING_SINCE)
    _known(account, "888", "Closed", status="closed", closed_at=now - timedelta(hours=1))
    OutboxEvent.objects.all().delete()
    deliveries = [
        _delivery([_text("111", "wamid.1", "still waiting for the refund")]),
        _delivery([_text("222", "wamid.2", "hello, parcel lost")]),
        _delivery([], statuses=[{"id": "wamid.unknown", "status": "read", "timestamp": "1"}]),
        _delivery([_text("222", "wamid.3", "tracking number is ZX9")]),
        _delivery([_text("111", "wamid.old.111", "first words")]),  # already recorded
        _delivery([_text("333", "wamid.4", "")]),  # empty text
        _delivery([_text("444", "wamid.5", "it broke again")]),  # reopened
        _delivery([_text("555", "wamid.6", "new trouble")]),  # too late: a new ticket
        _delivery([_text("666", "wamid.7", "thanks, one more thing")]),  # waiting again
        _delivery([_text("777", "wamid.8", "any news?"), _text("888", "wamid.9", "hi")]),
        _delivery([_text("444", "wamid.10", "same order as before")]),
    ]
    for body in deliveries:
        _receive(account, body)
    return account


def _snapshot() -> dict[str, Any]:
    def waiting(since: Any) -> str | None:
        if since is None:
            return None
        return "kept" if since == WAITING_SINCE else "set"

    tickets = [
        (
            t.customer.name,
            t.subject,
            t.status,
            waiting(t.waiting_since),
            t.resolved_at is not None,
            t.closed_at is not None,
        )
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
    by_name: dict[str, list[tuple[Any, ...]]] = {}
    for ticket in bulk["tickets"]:
        by_name.setdefault(ticket[0], []).append(ticket[2:])
    assert by_name == {
        "Known": [("open", "set", False, False)],  # pending: reopened
        "Recent": [("open", "set", False, False)],  # resolved in the window: reopened
        "Late": [("resolved", "set", True, False), ("new", "set", False, False)],
        "Answered": [("open", "set", False, False)],  # waiting again
        "Waiting": [("open", "kept", False, False)],  # still waiting since then
        "Closed": [("closed", "set", False, True), ("new", "set", False, False)],
        "Sender 222": [("new", "set", False, False)],
        "Sender 333": [("new", "set", False, False)],
    }
    assert [m[1] for m in bulk["messages"][6:]] == [
        "wamid.1",
        "wamid.2",
        "wamid.3",
        "wamid.4",
        "wamid.5",
        "wamid.6",
        "wamid.7",
        "wamid.8",
        "wamid.9",
        "wamid.10",
    ]
    vectors = dict(bulk["vectors"])
    assert "zx9" in vectors["hello, parcel lost"]  # the new ticket's vector: 2nd message
    assert "broke" in vectors["Recent's earlier question"]  # the reopened one: both
    assert "order" in vectors["Recent's earlier question"]
    reopened = [e for e in bulk["events"] if e[0] == "ticket.updated"]
    assert [e[2] for e in reopened] == [
        {"status": ["pending", "open"]},
        {"status": ["resolved", "open"]},
    ]
    assert len(queries) < len(single_queries)


def test_a_failing_bulk_run_falls_back_to_one_by_one() -> None:
    account = _scenario()
    with mock.patch.object(bulk, "ids_reserve", side_effect=RuntimeError("boom")) as ids:
        # ticket creation one by one reserves ids through tickets.services, not this name
        _drain(account)
    assert ids.called
    assert Message.objects.filter(channel_message_id__startswith="wamid.").count() == 16
    statuses = list(InboundEvent.objects.order_by("id").values_list("status", flat=True))
    # the status for a message we never sent waits for a retry, as always
    assert statuses == ["processed", "processed", "retrying", *["processed"] * 8]
