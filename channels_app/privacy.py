"""Erasure of what the channels keep about a customer (registered with
``tickets.context.privacy`` in ``apps.py``): raw inbound deliveries and outbound attempts.

**Raw inbound deliveries** (``InboundEvent``). A delivery is found when it holds
one of their identifiers (e-mail, phone, a channel id, the channel id of one of their
messages) in its body, headers or natural key, or when a web chat session token in its
headers carries their visitor id or e-mail (tokens are base64 JSON, so they are
decoded here: whatever claims a token of any version holds are checked). A name word
finds nothing (until 2026-12-07 it did, as a substring: erasing "Caller unknown number"
blanked every delivery with a ``phone_number_id``); an identifier another live customer
also has (a shared landline) is not theirs (``ErasureSubject.identifiers``). The person's
delivery is *blanked*: body, headers and error emptied (a natural key made of their ids
replaced by its digest), the row (channel, account, status, dates, counts) kept.
Blanking rather than redacting is what removes personal data that a text search cannot
see: quoted-printable and base64 MIME parts of a raw e-mail, ``\\u`` escapes in JSON,
the session token.

A delivery already processed is blanked whoever sent it (its messages exist as rows,
redacted by the core). A delivery not processed yet (received, retrying, or a dead letter
awaiting re-drive) is looked at by its *sender*, as the drain would parse it (the
adapter's ``parse``: WhatsApp ``from``, Messenger / Instagram ``sender.id``, X's sender,
an e-mail's From, a status's recipient; for web chat the session token's visitor id or
the e-mail the visitor typed: a signed token cannot be redacted, and the drain would copy
that address into the message), because another customer may have written "please also reply to
ana@example.com" or shared the person's phone number:

- *theirs* (every message or status in it is the person's, or its sender cannot be read):
  blanked and closed as ``ignored`` with the error "erased": processing it later would
  recreate their data;
- *someone else's that mentions them*: redacted in place (their identifiers, name words
  and message ids become ``[redacted]``, their own words ``[erased]``) and left to be
  processed as usual, dead letters staying dead letters to re-drive. JSON bodies are
  redacted value by value (``\\u`` escapes are seen; keys are never rewritten, except
  one that is exactly their id, as in X's ``users`` map) with other senders' ids kept as
  they are; other bodies as text, with other senders' addresses and names kept (Anabel's
  From header when Ana is erased);
- *a batch from several senders* (one Meta webhook with entries from several people):
  the person's entries (messages, contacts, statuses) are cut out, the rest redacted and
  kept;
- and a kept delivery is parsed again: should what the drain would make of it still name
  them (an address in a base64 or quoted-printable MIME part, an HTML entity: what a text
  search cannot redact) or no longer come from the same senders, it is blanked and closed
  as ``ignored`` with its own error (``ERASED_INSEPARABLE_NOTE``) and a warning logged:
  nothing of theirs is kept, and the loss of the other sender's message is visible in the
  admin (Channels → Inbound events), never silent.

Names are redacted as whole words (``tickets.context.privacy.redact``): "Ana" is not
found in "Anabel". Someone else's pending web chat message keeps its own staged file's
storage key (``_own_staged_key_kept``).

A blanked web chat delivery's file still staged (``channels_app.services.staged_uploads``:
one never drained) is deleted from storage once the erase has committed; should that
fail, the hourly ``webchat-uploads-purge`` deletes it (no pending event names it now).

**Outbound deliveries** on their tickets (channel replies and chatbot hand-off callbacks):
the last error and each attempt's request and response summaries and error redacted.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.utils import timezone

from channels_app.adapters.base import (
    Event,
    InboundMessage,
    StatusUpdate,
    WebhookRequest,
    get_adapter,
)
from channels_app.adapters.webchat.adapter import SESSION_HEADER, event_staged_names
from channels_app.models import InboundEvent, InboundStatus
from channels_app.services import CHANNEL_REPLY_KIND
from channels_app.services.handoff import CALLBACK_KIND
from channels_app.services.staged_uploads import staged_uploads_delete_on_commit
from support.delivery.models import Attempt
from support.delivery.selectors import deliveries_for_subject
from support.parsing import json_loads
from tickets.context.privacy import ERASED, REDACTED, ErasureSubject, mentions

logger = logging.getLogger(__name__)

ERASED_NOTE = "erased: personal data removed at the customer's request"
ERASED_INSEPARABLE_NOTE = (
    "erased: held another sender's message that could not be separated from the erased "
    "customer's data; closed unprocessed"
)
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


def _ids_mentioning(values: list[str]) -> set[int]:
    """The events holding one of ``values`` (identifiers, message ids: never name words)."""
    if not values:
        return set()
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
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
        return {event_id for (event_id,) in cursor.fetchall()}


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


def _webchat_ids_for(subject: ErasureSubject) -> set[int]:
    """Web chat deliveries whose session token carries one of the person's identifiers
    (base64: no SQL match). A name claim alone is not theirs: anyone may be called so."""
    strong = {v.lower() for v in subject.identifiers}
    found: set[int] = set()
    if not strong:
        return found
    events = InboundEvent.objects.filter(channel="webchat").only("id", "headers")
    for event in events.iterator(chunk_size=2000):
        token = (event.headers or {}).get(SESSION_HEADER, "")
        if not isinstance(token, str) or not token:
            continue
        values = {str(v).strip().lower() for v in token_claims(token).values() if v}
        if values & strong:
            found.add(event.pk)
    return found


def inbound_events_erase(subject: ErasureSubject) -> int:
    """Blank the person's raw deliveries, redact the ones that only mention them; see the
    module docstring. Returns the rows changed."""
    found = _ids_mentioning([*subject.identifiers, *subject.message_ids])
    found |= _webchat_ids_for(subject)
    theirs = _Theirs(subject)
    changed = 0
    now = timezone.now()
    staged: list[str] = []
    for event in InboundEvent.objects.filter(pk__in=list(found)).select_related("account"):
        pending = event.status in PENDING
        fields = ["body", "headers", "summary", "error", "updated_at"]
        if not pending:
            staged += _blank(event, subject, fields, ERASED_NOTE)
        else:
            verdict, kept = _pending_split(event, theirs)
            if verdict in (_MENTION, _MIXED):
                assert kept is not None
                _redact_in_place(event, theirs.redactor, fields, body=kept)
            else:
                note = ERASED_NOTE if verdict == _THEIRS else ERASED_INSEPARABLE_NOTE
                if verdict == _INSEPARABLE:
                    logger.warning(
                        "Erasure: inbound event %s holds another sender's message that "
                        "could not be separated from the erased customer's data; closed "
                        "unprocessed (admin: inbound events).",
                        event.pk,
                    )
                staged += _blank(event, subject, fields, note)
                event.status = InboundStatus.IGNORED
                event.processed_at = now
                fields += ["status", "processed_at"]
        event.save(update_fields=fields)
        changed += 1
    # A visitor's file that was never made an attachment: deleted once the erase commits.
    staged_uploads_delete_on_commit(staged)
    return changed


def _blank(event: InboundEvent, subject: ErasureSubject, fields: list[str], note: str) -> list[str]:
    """Empty the delivery (its web chat staged file's name returned: deleted on commit)."""
    staged: list[str] = []
    if event.channel == "webchat":  # the file it names, as blanking forgets it
        staged += event_staged_names(event.account_id, event.external_id, event.body_bytes)
    event.body = b""
    event.headers = {}
    event.summary = {}
    event.error = note
    if subject.redact(event.external_id) != event.external_id:
        # A natural key made of their ids (web chat: "<visitor id>:<client id>"):
        # a digest keeps it unique without naming them.
        digest = hashlib.sha256(event.external_id.encode()).hexdigest()[:40]
        event.external_id = f"erased:{digest}"
        fields.append("external_id")
    return staged


def _redact_in_place(
    event: InboundEvent, redactor: ErasureSubject, fields: list[str], *, body: bytes
) -> None:
    """Someone else's pending delivery, kept to be processed with the person's
    identifiers and words replaced (``body``: already redacted by ``_pending_split``)."""
    event.body = body
    if event.channel != "webchat" and redactor.redact(event.external_id) != event.external_id:
        # (a web chat key is the sender's visitor id and names where its file is staged)
        digest = hashlib.sha256(event.external_id.encode()).hexdigest()[:40]
        event.external_id = f"erased:{digest}"
        fields.append("external_id")
    event.headers = redactor.redact_json(event.headers)
    event.summary = redactor.redact_json(event.summary)
    event.error = redactor.redact(event.error)


_THEIRS = "theirs"  # sent by the person (or about them) only: blanked and closed
_MENTION = "mention"  # someone else's that names them: redacted, processed as usual
_MIXED = "mixed"  # a batch with theirs and others': theirs cut out, the rest redacted
_INSEPARABLE = "inseparable"  # others' that cannot be cleaned safely: blanked and closed

# Where a channel's batch names whose an entry is (WhatsApp ``messages[].from``,
# ``contacts[].wa_id``, ``statuses[].recipient_id``; Messenger / Instagram
# ``messaging[].sender.id`` / ``recipient.id`` and comments' ``from.id``; X
# ``direct_message_events[].message_create``; SendGrid events' ``email``).
_PARTY_KEYS = ("from", "wa_id", "recipient_id", "sender_id", "email")
_PARTY_OBJECTS = ("from", "sender", "recipient", "user")
_PHONE = re.compile(r"\+?[\d\s().-]{7,}")


def _phone_digits(value: str) -> str:
    return re.sub(r"\D", "", value) if _PHONE.fullmatch(value) else ""


class _Theirs:
    """Tells the person's sender ids from other people's, and redacts for them."""

    def __init__(self, subject: ErasureSubject) -> None:
        ids = {v.strip().lower() for v in subject.identifiers if v.strip()}
        self.ids = ids | {d for v in ids if (d := _phone_digits(v))}
        tokens = sorted({*subject.tokens, *subject.message_ids}, key=len, reverse=True)
        # Their messages' channel ids too (a reply's context names the message it quotes).
        self.redactor = dataclasses.replace(subject, tokens=tokens)
        self.tokens = tokens

    def is_theirs(self, value: object) -> bool:
        if not isinstance(value, str | int) or isinstance(value, bool):
            return False
        text = str(value).strip().lower()
        if not text:
            return False
        return text in self.ids or (_phone_digits(text) or "\0") in self.ids

    def owns(self, item: Event) -> bool:
        return any(self.is_theirs(party) for party in _parties(item))

    def owns_entry(self, entry: dict[str, Any]) -> bool:
        """One entry of a batch (a message, a contact, a status) is theirs."""
        if any(self.is_theirs(entry.get(key)) for key in _PARTY_KEYS):
            return True
        for key in _PARTY_OBJECTS:
            party = entry.get(key)
            if isinstance(party, dict) and self.is_theirs(party.get("id")):
                return True
        created = entry.get("message_create")
        if isinstance(created, dict):
            target = created.get("target")
            recipient = target.get("recipient_id") if isinstance(target, dict) else None
            return self.is_theirs(created.get("sender_id")) or self.is_theirs(recipient)
        return False

    def still_named(
        self, items: list[Event] | None, senders: list[list[str]], protected: list[str]
    ) -> bool:
        """Whether what a kept delivery would become still names them (an encoded e-mail
        part, an HTML entity: what a text search of the body misses), or no longer comes
        from the same ``senders`` (a header broken by a redaction). The ``protected``
        strings (other senders' addresses and names) are left out of the search."""
        if items is None or [_parties(i) for i in items if _parties(i)] != senders:
            return True
        if not self.tokens:
            return False
        others = _any_of(protected)
        for item in items:
            for text in _strings(item):
                text = others.sub(" ", text) if others else text
                # as the redaction matches them: whole words ("Ana" is not in "Anabel")
                if mentions(text.replace(REDACTED, " ").replace(ERASED, " "), self.tokens):
                    return True
        return False


def _any_of(values: list[str]) -> re.Pattern[str] | None:
    values = sorted(set(values), key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in values), re.I) if values else None


def _parties(item: Event) -> list[str]:
    """Whose an item is: a message's sender (the customer, for an echo too), a status's
    recipient."""
    if isinstance(item, InboundMessage):
        return [item.sender_id, item.sender_email, item.sender_phone]
    if isinstance(item, StatusUpdate):
        return [item.recipient_id]
    return []


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _strings(getattr(value, item.name))


def _parsed(event: InboundEvent, body: bytes, headers: dict[str, Any]) -> list[Event] | None:
    """The items the drain would make of this body (None when it cannot be read)."""
    try:
        return list(
            get_adapter(event.channel).parse(
                event.account, WebhookRequest(headers=headers, body=body)
            )
        )
    except Exception:  # noqa: BLE001 - any failure means: the sender cannot be told
        return None


def _json_or_none(body: bytes) -> Any:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict | list) else None


def _without_their_entries(value: Any, theirs: _Theirs) -> Any:
    """A batch without the person's entries (and without keys that are their ids: X's
    ``users`` map)."""
    if isinstance(value, list):
        return [
            _without_their_entries(v, theirs)
            for v in value
            if not (isinstance(v, dict) and theirs.owns_entry(v))
        ]
    if isinstance(value, dict):
        return {
            k: _without_their_entries(v, theirs)
            for k, v in value.items()
            if not theirs.is_theirs(k)
        }
    return value


def _redact_keys_too(value: Any, theirs: _Theirs) -> Any:
    """``redact_json`` that keeps other people's ids as they are (a sender id holding one
    of their name words is still that sender's). Keys are the sender's format, never
    rewritten ("display_phone_number" stays whatever the name words), except a key that
    is exactly one of their ids (X's ``users`` map), which becomes ``[redacted]``."""
    if isinstance(value, list):
        return [_redact_keys_too(v, theirs) for v in value]
    if not isinstance(value, dict):
        return theirs.redactor.redact_json(value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _PARTY_KEYS and isinstance(item, str | int) and not theirs.is_theirs(item):
            out[key] = item
        elif key in _PARTY_OBJECTS and isinstance(item, dict) and "id" in item:
            party = item["id"]
            out[key] = {**_redact_keys_too(item, theirs), "id": party}
            if theirs.is_theirs(party):
                out[key]["id"] = REDACTED
        else:
            out[REDACTED if theirs.is_theirs(key) else key] = _redact_keys_too(item, theirs)
    return out


def _redacted_body(
    body: bytes, data: Any, theirs: _Theirs, protected: list[str] | None = None
) -> bytes:
    """JSON bodies redacted value by value (so ``\\u`` escapes are seen), others as text
    (undecodable bytes kept as they were: a multipart e-mail's attachments)."""
    if data is not None:
        redacted = _redact_keys_too(data, theirs)
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode()
    text = body.decode("utf-8", "surrogateescape")
    others = _any_of(protected or [])
    if others is None:
        return theirs.redactor.redact(text).encode("utf-8", "surrogateescape")
    # Other senders' addresses and names as they are: "Anabel <anabel@…>" when Ana is
    # erased (a redacted From header would no longer name its sender).
    pieces = re.split(f"({others.pattern})", text, flags=re.I)
    redacted = "".join(p if i % 2 else theirs.redactor.redact(p) for i, p in enumerate(pieces))
    return redacted.encode("utf-8", "surrogateescape")


def _pending_split(event: InboundEvent, theirs: _Theirs) -> tuple[str, bytes | None]:
    """For a pending delivery holding one of their identifiers: whose it is (see the
    module docstring) and, when it is kept, its body without them."""
    body = event.body_bytes
    data = _json_or_none(body)
    if event.channel == "webchat":  # one visitor: the session token says who
        token = (event.headers or {}).get(SESSION_HEADER, "")
        claims = token_claims(token) if isinstance(token, str) else {}
        if any(theirs.is_theirs(claims.get(key)) for key in ("v", "e")):
            return _THEIRS, None
        text = _redacted_body(body, data, theirs).decode("utf-8", "surrogateescape")
        return _MENTION, _own_staged_key_kept(event, text).encode("utf-8", "surrogateescape")
    items = _parsed(event, body, event.headers)
    if items is None:
        return _THEIRS, None  # whose it is cannot be told: as before, theirs
    mine = [item for item in items if theirs.owns(item)]
    others = [item for item in items if _parties(item) and not theirs.owns(item)]
    if mine and not others:
        return _THEIRS, None
    verdict = _MENTION
    if mine:
        if data is None:
            return _INSEPARABLE, None
        verdict, data = _MIXED, _without_their_entries(data, theirs)
    senders = [_parties(item) for item in others]
    names = [item.sender_name for item in others if isinstance(item, InboundMessage)]
    protected = [value for value in (*(p for s in senders for p in s), *names) if value]
    kept = _redacted_body(body, data, theirs, protected)
    headers = theirs.redactor.redact_json(event.headers)
    if theirs.still_named(_parsed(event, kept, headers), senders, protected):
        return _INSEPARABLE, None
    return verdict, kept


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
    # Channel replies, and the hand-off bot's callbacks (a bot's error answer may quote
    # the person: "conversation of ana@example.com is closed").
    deliveries = deliveries_for_subject(
        subject_type="ticket", subject_ids=list(subject.ticket_ids)
    ).filter(target_kind__in=[CHANNEL_REPLY_KIND, CALLBACK_KIND])
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
