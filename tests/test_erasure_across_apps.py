"""Erase a customer who came in through a real signed WhatsApp delivery, was routed and got
a reply: no table (text, JSON, search vectors or raw bytes) keeps their personal data."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.db import connection

from channels_app.models import DeliveryAttempt, InboundEvent
from channels_app.tests.conftest import make_account
from routing.models import RoutingDecision
from tickets.context import privacy
from tickets.models import Customer, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
PERSONAL = ["Sheena Nelson", "16505551234", "Sheena", "Nelson"]


def _columns() -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'tsvector',
                                'character', 'bytea')
            """
        )
        return cursor.fetchall()


def _scan(tokens: list[str]) -> list[tuple[str, str, str]]:
    hits = []
    with connection.cursor() as cursor:
        for table, column, kind in _columns():
            expr = f"encode(\"{column}\", 'escape')" if kind == "bytea" else f'"{column}"::text'
            for token in tokens:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE {expr} ILIKE %s',  # noqa: S608
                    [f"%{token}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append((table, column, token))
    return hits


@responses.activate
def test_erase_reaches_channel_deliveries_and_routing(
    post_fixture: Any,
    agent: Any,
    supervisor: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.ROUTING_ENABLED = True
    settings.TICKETING_SYSTEM_URL = ""
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-ERASE"}]})
    account = make_account("whatsapp")
    assert post_fixture(account, "text_message").status_code == 200
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Hi Sheena, it comes in blue.", author_user=agent)
    assert RoutingDecision.objects.filter(ticket=ticket).exists()
    assert DeliveryAttempt.objects.count() == 1
    before = {(t, c) for t, c, _ in _scan(PERSONAL)}
    assert ("channels_app_inboundevent", "body") in before

    customer = Customer.objects.get()
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")

    assert _scan(PERSONAL) == []
    assert InboundEvent.objects.count() == 1  # the delivery record stays, redacted
