"""SendGrid's signed Event Webhook: what became of the mail we sent.

SendGrid POSTs a JSON array of events (``delivered``, ``bounce``, ``dropped``,
``deferred``, ``processed``, ``spamreport``, ``unsubscribe``, ``open``, ``click``…) to the
same webhook URL as Inbound Parse; a JSON body is an Event Webhook delivery, a
``multipart/form-data`` one an inbound e-mail.

**Signature.** ECDSA (P-256, SHA-256) over ``<timestamp><raw body>``: the base64 DER
signature in ``X-Twilio-Email-Event-Webhook-Signature``, the Unix time in
``X-Twilio-Email-Event-Webhook-Timestamp``, checked with the account's verification key
(``settings["event_webhook_public_key"]``: base64 DER SubjectPublicKeyInfo, as SendGrid's
Mail Settings show it, or PEM). A timestamp more than ``CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS``
away from now is refused (a replayed delivery); each event is applied once by its
``sg_event_id`` (``channels_app.services.sent_events``).

**Mapping.** Our send sets ``custom_args = {"ticket_id", "message_id"}``; SendGrid echoes
custom args as top-level fields of every event, so ``message_id`` names our ``Message``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from channels_app.adapters.base import (
    Event,
    MalformedPayload,
    SignatureError,
    StatusUpdate,
    UnknownEvent,
    WebhookRequest,
    epoch_to_datetime,
    json_body,
)
from support.parsing import parse_id

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PUBLIC_KEY_SETTING = "event_webhook_public_key"

#: SendGrid event → our delivery status. Others (deferred, processed, open, click,
#: spamreport, unsubscribe, group_unsubscribe…) keep their own name: recorded, not applied.
STATUS_OF_EVENT = {"delivered": "delivered", "bounce": "failed", "dropped": "failed"}


def is_event_webhook(request: WebhookRequest) -> bool:
    """Inbound Parse always posts ``multipart/form-data``; the Event Webhook JSON."""
    return request.header("content-type").split(";")[0].strip().lower() == "application/json"


def max_age_seconds() -> int:
    return int(getattr(settings, "CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS", 90_000))


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER) or as PEM; ``ValueError``
    when it is neither or not an elliptic-curve key."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def event_signature_verify(public_key: str, request: WebhookRequest) -> None:
    """Raise ``SignatureError`` unless the delivery is signed by ``public_key`` and fresh:
    401 when a header is missing, 403 when stale, forged or no key is configured."""
    signature = request.header(SIGNATURE_HEADER).strip()
    timestamp = request.header(TIMESTAMP_HEADER).strip()
    if not signature or not timestamp:
        raise SignatureError(
            f"Missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header.", status=401
        )
    if not public_key.strip():
        raise SignatureError(
            "This account has no Event Webhook verification key configured.", status=403
        )
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a Unix time.", status=403)
    if abs(time.time() - int(timestamp)) > max_age_seconds():
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is more than {max_age_seconds()} s away from now (replay?).",
            status=403,
        )
    try:
        key = load_public_key(public_key)
    except ValueError as exc:
        raise SignatureError(
            f"The account's Event Webhook verification key is unusable: {exc}.", status=403
        ) from None
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        key.verify(
            raw_signature, timestamp.encode("ascii") + request.body, ec.ECDSA(hashes.SHA256())
        )
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body.", status=403) from None


def events_check(body: bytes) -> list[Any]:
    data = json_body(body)
    if not isinstance(data, list):
        raise MalformedPayload("An Event Webhook body is a JSON array of events.")
    return data


def event_id(item: dict[str, Any]) -> str:
    """``sg_event_id``; for an event without one, a digest of the event itself."""
    given = item.get("sg_event_id")
    if isinstance(given, str) and given.strip():
        return given.strip()[:200]
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _our_message_id(item: dict[str, Any]) -> int | None:
    value = item.get("message_id")  # our custom arg (custom args arrive as strings)
    found = parse_id(str(value).strip()) if isinstance(value, (str, int)) else None
    return found if found else None


def events_parse(body: bytes) -> list[Event]:
    """One ``StatusUpdate`` per SendGrid event (``event_id``, ``message_ref`` and the
    SendGrid event name set), an ``UnknownEvent`` for anything that is not an event."""
    out: list[Event] = []
    for item in events_check(body):
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            out.append(UnknownEvent("An Event Webhook item that is not an event object."))
            continue
        name = item["event"].strip().lower()[:32]
        reason = str(item.get("reason") or item.get("response") or "").strip()
        kind = str(item.get("type") or "").strip()  # bounce: "bounce" or "blocked"
        smtp_status = str(item.get("status") or "").strip()
        error_code = ""
        error = ""
        if STATUS_OF_EVENT.get(name) == "failed":
            error_code = f"sendgrid_{kind or name}"[:64]
            detail = f"{reason} ({smtp_status})" if reason and smtp_status else reason
            if name == "dropped":
                prefix = "Dropped by SendGrid"
            elif kind == "blocked":
                prefix = "Blocked by the recipient's mail server"
            else:
                prefix = "Bounced by the recipient's mail server"
            error = f"{prefix}: {detail}" if detail else prefix
        out.append(
            StatusUpdate(
                external_message_id=str(item.get("sg_message_id") or "")[:255],
                status=STATUS_OF_EVENT.get(name, name),
                timestamp=epoch_to_datetime(item.get("timestamp")),
                error_code=error_code,
                error=error,
                event_id=event_id(item),
                message_ref=_our_message_id(item),
                event=name,
            )
        )
    return out
