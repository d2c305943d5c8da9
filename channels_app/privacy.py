"""Erasure of what the channels keep about a customer: raw inbound deliveries and
outbound attempt bodies (registered with ``tickets.context.privacy`` in ``apps.py``)."""

from __future__ import annotations

from django.db import connection

from channels_app.models import DeliveryAttempt, InboundEvent
from tickets.context.privacy import ErasureSubject, redact_json


def pg_escape_bytes(data: bytes) -> str:
    """``encode(bytea, 'escape')`` in Python: NUL and high bytes as octal, ``\\`` doubled."""
    out = []
    for byte in data:
        if byte == 0 or byte >= 0x80:
            out.append(f"\\{byte:03o}")
        elif byte == 0x5C:
            out.append("\\\\")
        else:
            out.append(chr(byte))
    return "".join(out)


def _like(token: str) -> str:
    # Raw bodies are bytes (possibly binary): match the token's UTF-8 bytes in the
    # 'escape' text form, which PostgreSQL produces for any bytes.
    escaped = pg_escape_bytes(token.encode()).replace("\\", "\\\\")
    return "%" + escaped.replace("%", "\\%").replace("_", "\\_") + "%"


def _inbound_ids_mentioning(tokens: list[str]) -> list[int]:
    if not tokens:
        return []
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} "  # noqa: S608 - table name from the model
            "WHERE encode(body, 'escape') ILIKE ANY(%s) "
            "OR headers::text ILIKE ANY(%s)",
            [[_like(t) for t in tokens], [_like(t) for t in tokens]],
        )
        return [row[0] for row in cursor.fetchall()]


def channels_erase(subject: ErasureSubject) -> int:
    """Redact raw inbound bodies and headers that mention the person, and the request and
    response bodies of replies sent on their tickets. Returns the rows changed."""
    changed = 0
    for event in InboundEvent.objects.filter(pk__in=_inbound_ids_mentioning(subject.tokens)):
        text = bytes(event.body).decode("utf-8", "replace")
        event.body = subject.redact(text).encode()
        event.headers = redact_json(event.headers, subject.tokens)
        event.summary = redact_json(event.summary, subject.tokens)
        event.save(update_fields=["body", "headers", "summary"])
        changed += 1
    attempts = DeliveryAttempt.objects.filter(delivery__message__ticket_id__in=subject.ticket_ids)
    for attempt in attempts:
        attempt.request_body = redact_json(attempt.request_body, subject.tokens)
        attempt.response_body = subject.redact(attempt.response_body)
        attempt.save(update_fields=["request_body", "response_body"])
        changed += 1
    return changed
