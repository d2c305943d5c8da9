"""Inbound, step one: verify, record, acknowledge (the webhook view answers at once;
the drain processes later)."""

from __future__ import annotations

import hashlib
import json
import logging

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app.adapters.base import (
    MalformedPayload,
    SignatureError,
    WebhookRequest,
    get_adapter,
)
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.services.drain import inbound_drain_wake
from support.parsing import without_nul

logger = logging.getLogger(__name__)


# --- inbound: verify, record, acknowledge ------------------------------------------------


def webhook_request_build(
    *, headers: dict[str, str], body: bytes, query: dict[str, str]
) -> WebhookRequest:
    return WebhookRequest(
        headers={k.lower(): v for k, v in headers.items()}, body=body, query=query
    )


def inbound_receive(
    *, account: ChannelAccount, request: WebhookRequest
) -> tuple[InboundEvent, bool]:
    """Verify, check and record one delivery; returns (event, created).

    ``SignatureError``: nothing stored, the refusal counted on the account.
    ``MalformedPayload``: the raw body is kept (status malformed) and the error re-raised.
    A duplicate delivery returns the existing event and creates nothing.
    """
    adapter = get_adapter(account.channel)
    try:
        adapter.verify(account, request)
    except SignatureError:
        ChannelAccount.objects.filter(pk=account.pk).update(rejected_count=F("rejected_count") + 1)
        raise
    # Stored as text and jsonb: a NUL (which PostgreSQL refuses) becomes U+FFFD here, as
    # in every parsed event (``channels_app.adapters.base``); the raw body is bytea.
    headers = {
        k: str(without_nul(v)) for k, v in request.headers.items() if k in adapter.kept_headers
    }
    try:
        adapter.check_well_formed(request)
    except MalformedPayload as exc:
        _inbound_store(
            account=account,
            external_id="malformed:" + hashlib.sha256(request.body).hexdigest(),
            headers=headers,
            body=request.body,
            status=InboundStatus.MALFORMED,
            error=str(without_nul(str(exc))),
        )
        raise
    return _inbound_store(
        account=account,
        external_id=str(without_nul(adapter.delivery_id(request)))[:255],
        headers=headers,
        body=request.body,
        status=InboundStatus.RECEIVED,
    )


def _inbound_store(
    *,
    account: ChannelAccount,
    external_id: str,
    headers: dict[str, str],
    body: bytes,
    status: str,
    error: str = "",
) -> tuple[InboundEvent, bool]:
    """One ``INSERT … ON CONFLICT DO NOTHING`` (its own commit outside a transaction):
    a redelivery hits the unique constraint and creates nothing."""
    now = timezone.now()
    event = InboundEvent(
        channel=account.channel,
        account=account,
        external_id=external_id,
        headers=headers,
        body=body,
        status=status,
        error=error,
        received_at=now,
        updated_at=now,
    )
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (channel, account_id, external_id, headers, body, "  # noqa: S608
            "received_at, status, attempts, error, processed_at, summary, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, NULL, '{}', %s) "
            "ON CONFLICT ON CONSTRAINT inbound_event_unique DO NOTHING RETURNING id",
            [
                account.channel,
                account.pk,
                external_id,
                json.dumps(headers),
                body,
                now,
                status,
                error,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        existing = InboundEvent.objects.get(
            channel=account.channel, account=account, external_id=external_id
        )
        return existing, False
    event.pk = row[0]
    if status == InboundStatus.RECEIVED:
        account_id = account.pk
        transaction.on_commit(lambda: inbound_drain_wake(account_id))
    return event, True
