"""Erasure of what the channels keep about a customer (registered with
``tickets.context.privacy`` in ``apps.py``): raw inbound deliveries and outbound attempts.

**Raw inbound deliveries** (``InboundEvent``). A delivery is the person's when it holds
one of their identifiers (e-mail, phone, a channel id, the channel id of one of their
messages) in its body, headers or natural key, or when a web chat session token in its
headers carries their visitor id, e-mail or name (tokens are base64 JSON, so they are
decoded here: whatever claims a token of any version holds are checked). Such a delivery
is *blanked*: body, headers and error emptied (a natural key made of their ids replaced by
its digest), the row (channel, account, status, dates, counts) kept. Blanking rather than
redacting is what removes personal data that a text search cannot see: quoted-printable
and base64 MIME parts of a raw e-mail, ``\\u`` escapes in JSON, the session token.

A blanked delivery that was not processed yet (received, retrying, or a dead letter
awaiting re-drive) is closed as ``ignored`` with the error "erased": processing it later
would recreate the person's data. A delivery that only mentions one of their name words
(it may be someone else's message) is blanked when already processed, and only redacted
in place when still pending, so another customer's message still goes through (with its
own staged file's storage key kept: ``_own_staged_key_kept``).

A blanked web chat delivery's file still staged (``channels_app.services.staged_uploads``:
one never drained) is deleted from storage once the erase has committed; should that
fail, the hourly ``webchat-uploads-purge`` deletes it (no pending event names it now).

**Outbound attempts** on their tickets: request and response bodies and errors redacted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from typing import Any

from django.db import connection
from django.utils import timezone

from channels_app.adapters.webchat.adapter import SESSION_HEADER, event_staged_names
from channels_app.models import InboundEvent, InboundStatus
from channels_app.services import CHANNEL_REPLY_KIND
from channels_app.services.staged_uploads import staged_uploads_delete_on_commit
from support.delivery.models import Attempt
from support.delivery.selectors import deliveries_for_subject
from support.parsing import json_loads
from tickets.context.privacy import ErasureSubject

ERASED_NOTE = "erased: personal data removed at the customer's request"
PENDING = (InboundStatus.RECEIVED, InboundStatus.RETRYING, InboundStatus.DEAD)


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


def _like_bytes(token: str) -> str:
    # Raw bodies are bytes (possibly binary): match the token's UTF-8 bytes in the
    # 'escape' text form, which PostgreSQL produces for any bytes.
    escaped = pg_escape_bytes(token.encode()).replace("\\", "\\\\")
    return "%" + escaped.replace("%", "\\%").replace("_", "\\_") + "%"


def _like_text(token: str) -> str:
    escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ids_mentioning(strong: list[str], weak: list[str]) -> dict[int, bool]:
    """Event id → whether an identifier (True) or only a name word (False) matched."""
    found: dict[int, bool] = {}
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        for values, is_strong in ((strong, True), (weak, False)):
            if not values:
                continue
            cursor.execute(
                f"SELECT id FROM {table} "  # noqa: S608 - table name from the model
                "WHERE encode(body, 'escape') ILIKE ANY(%s) "
                "OR headers::text ILIKE ANY(%s) OR external_id ILIKE ANY(%s)",
                [
                    [_like_bytes(v) for v in values],
                    [_like_text(json.dumps(v, ensure_ascii=False)[1:-1]) for v in values],
                    [_like_text(v) for v in values],
                ],
            )
            for (event_id,) in cursor.fetchall():
                found[event_id] = found.get(event_id, False) or is_strong
    return found


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a Django ``signing`` token (``dumps``/``TimestampSigner`` shapes,
    compressed or not) without checking its signature or age: erasure must read whatever
    old session tokens hold. Empty when it is not such a token."""
    payload = token.split(":", 1)[0]
    compressed = payload.startswith(".")
    payload = payload.lstrip(".")
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        if compressed:
            data = zlib.decompress(data)
        claims = json_loads(data, what="The token")
    except (binascii.Error, ValueError, zlib.error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _webchat_ids_for(subject: ErasureSubject) -> dict[int, bool]:
    """Web chat deliveries whose session token names the person (base64: no SQL match)."""
    strong = {v.lower() for v in subject.identifiers}
    weak = {v.lower() for v in subject.tokens}
    found: dict[int, bool] = {}
    events = InboundEvent.objects.filter(channel="webchat").only("id", "headers")
    for event in events.iterator(chunk_size=2000):
        token = (event.headers or {}).get(SESSION_HEADER, "")
        if not isinstance(token, str) or not token:
            continue
        values = {str(v).strip().lower() for v in token_claims(token).values() if v}
        if values & strong:
            found[event.pk] = True
        elif any(w in v for v in values for w in weak):
            found.setdefault(event.pk, False)
    return found


def inbound_events_erase(subject: ErasureSubject) -> int:
    """Blank (or, for a pending delivery only mentioning a name, redact) the person's raw
    deliveries; see the module docstring. Returns the rows changed."""
    found = _ids_mentioning([*subject.identifiers, *subject.message_ids], subject.tokens)
    for event_id, is_strong in _webchat_ids_for(subject).items():
        found[event_id] = found.get(event_id, False) or is_strong
    changed = 0
    now = timezone.now()
    staged: list[str] = []
    for event in InboundEvent.objects.filter(pk__in=list(found)):
        pending = event.status in PENDING
        fields = ["body", "headers", "summary", "error", "updated_at"]
        if found[event.pk] or not pending:
            if event.channel == "webchat":  # the file it names, as blanking forgets it
                staged += event_staged_names(event.account_id, event.external_id, event.body_bytes)
            event.body = b""
            event.headers = {}
            event.summary = {}
            event.error = ERASED_NOTE
            if subject.redact(event.external_id) != event.external_id:
                # A natural key made of their ids (web chat: "<visitor id>:<client id>"):
                # a digest keeps it unique without naming them.
                digest = hashlib.sha256(event.external_id.encode()).hexdigest()[:40]
                event.external_id = f"erased:{digest}"
                fields.append("external_id")
            if pending:
                event.status = InboundStatus.IGNORED
                event.processed_at = now
                fields += ["status", "processed_at"]
        else:  # someone else's pending message that mentions a name word: keep it going
            text = bytes(event.body).decode("utf-8", "replace")
            redacted = subject.redact(text)
            if event.channel == "webchat":
                redacted = _own_staged_key_kept(event, redacted)
            event.body = redacted.encode()
            event.headers = subject.redact_json(event.headers)
            event.summary = subject.redact_json(event.summary)
            event.error = subject.redact(event.error)
        event.save(update_fields=fields)
        changed += 1
    # A visitor's file that was never made an attachment: deleted once the erase commits.
    staged_uploads_delete_on_commit(staged)
    return changed


def _own_staged_key_kept(event: InboundEvent, redacted: str) -> str:
    """Someone else's pending web chat message, redacted, with the storage key of its own
    staged file as it was: a path, not the person's words (a visitor's "vera-kettle.png"
    is stored under that name), and a redacted one points nowhere: the message would
    arrive without its file and the hourly purge delete the file. The file's name as the
    message shows it stays redacted."""
    names = event_staged_names(event.account_id, event.external_id, event.body_bytes)
    if not names:
        return redacted
    try:
        data = json.loads(redacted)
    except ValueError:
        return redacted
    file = data.get("file") if isinstance(data, dict) else None
    if not isinstance(file, dict) or file.get("key") == names[0]:
        return redacted
    file["key"] = names[0]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def outbound_erase(subject: ErasureSubject) -> int:
    """Redact what was sent to the person on their tickets, and what came back."""
    changed = 0
    deliveries = deliveries_for_subject(
        subject_type="ticket", subject_ids=list(subject.ticket_ids), target_kind=CHANNEL_REPLY_KIND
    )
    for delivery in deliveries:
        delivery.last_error = subject.redact(delivery.last_error)
        delivery.save(update_fields=["last_error"])
    for attempt in Attempt.objects.filter(delivery__in=deliveries):
        attempt.request_summary = subject.redact_json(attempt.request_summary)
        attempt.response_summary = subject.redact(attempt.response_summary)
        attempt.error = subject.redact(attempt.error)
        attempt.save(update_fields=["request_summary", "response_summary", "error"])
        changed += 1
    return changed


def channels_erase(subject: ErasureSubject) -> int:
    """The channels' erasure hook: raw deliveries and outbound attempts."""
    return inbound_events_erase(subject) + outbound_erase(subject)
