"""Web chat: our embeddable widget. Visitors hold a server-signed session token;
agent replies go out over the Channels layer (websocket) and stay pollable.

A web visitor is anonymous: the name and email typed into the widget are claims, never an
identity. The email travels as ``claimed_email`` in the message metadata (shown to agents
as unverified) and is never used to find a customer; the visitor becomes a guest
customer, linked to a real one only after proving the address (``channels_app.verification``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing

from channels_app.adapters.base import (
    ChannelAdapter,
    Event,
    InboundMessage,
    MalformedPayload,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    SignatureError,
    WebhookRequest,
    json_body,
)

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount

SESSION_SALT = "channels_app.webchat.session"
SESSION_HEADER = "x-webchat-session"
MAX_TEXT = 5000
#: The largest message body kept (its raw bytes are stored whole): ``MAX_TEXT`` characters,
#: a client id and the page's URL, even with every character escaped.
WEBCHAT_MESSAGE_MAX_BYTES = 65_536


def visitor_group(visitor_id: str) -> str:
    return f"webchat-{visitor_id}"


# Every web chat message carries its visitor in its channel id, ``<visitor id>:<rest>``:
# ``<visitor>:<client id>`` for the visitor's messages, ``<visitor>:out-<message id>`` for
# the replies sent to it. A visitor's widget shows exactly the messages with its prefix,
# wherever a merge moved them (``selectors.webchat_messages``).


def visitor_send_bucket(visitor_id: str) -> str:
    """The rate-limit bucket of a visitor's messages, over the socket and over HTTP alike
    (``WEBCHAT_WS_MESSAGES_PER_MINUTE``)."""
    return f"webchat-ws:{visitor_id}"


def visitor_send_wait(visitor_id: str, ip: str) -> float | None:
    """Count one visitor message, over the socket or over HTTP; the seconds to wait when it
    is over the session's limit (``WEBCHAT_WS_MESSAGES_PER_MINUTE``) or its address's
    (``WEBCHAT_MESSAGES_PER_IP_PER_MINUTE``), else None. The address limit matters because
    sessions are free: an address may open 60 a minute, each with its own session limit."""
    from support.throttling import hit

    wait = hit(visitor_send_bucket(visitor_id), int(settings.WEBCHAT_WS_MESSAGES_PER_MINUTE))
    if wait is not None:
        return wait
    return hit(f"webchat-send-ip:{ip}", int(settings.WEBCHAT_MESSAGES_PER_IP_PER_MINUTE))


def visitor_message_prefix(visitor_id: str) -> str:
    return f"{visitor_id}:"


def message_visitor(channel_message_id: str | None) -> str:
    """The visitor a web chat message's channel id names ("" if none)."""
    visitor, sep, _ = (channel_message_id or "").partition(":")
    return visitor if sep and visitor.startswith("v_") else ""


class SessionExpired(SignatureError):
    """A genuine session past ``WEBCHAT_SESSION_TTL_SECONDS``: 401, start a new one."""

    def __init__(self) -> None:
        super().__init__("This web chat session has expired; start a new chat session.", status=401)


def session_ttl() -> int:
    """Seconds a session token is valid (``WEBCHAT_SESSION_TTL_SECONDS``)."""
    return int(settings.WEBCHAT_SESSION_TTL_SECONDS)


def session_issue(account: ChannelAccount, *, name: str, email: str) -> dict[str, Any]:
    """A new visitor id and its signed token. ``signing.dumps`` stamps the issue time
    (``TimestampSigner``), which :func:`session_read` checks against the TTL. The email is
    only what the visitor typed: a claim, kept for agents to see, never trusted."""
    visitor_id = "v_" + secrets.token_hex(12)
    token = signing.dumps(
        {"a": account.pk, "v": visitor_id, "n": name[:200], "e": email[:254]}, salt=SESSION_SALT
    )
    return {"visitor_id": visitor_id, "session": token, "expires_in": session_ttl()}


def session_read(
    account: ChannelAccount, token: str, *, check_expiry: bool = True
) -> dict[str, Any]:
    """The session's claims; ``SignatureError`` when missing (401), expired (401), forged
    or for another widget (403). ``check_expiry=False`` only for deliveries already
    accepted while the session was valid (processing may run later)."""
    if not token:
        raise SignatureError("Missing web chat session.", status=401)
    try:
        claims = signing.loads(
            token, salt=SESSION_SALT, max_age=session_ttl() if check_expiry else None
        )
    except signing.SignatureExpired:
        raise SessionExpired() from None
    except signing.BadSignature:
        raise SignatureError("Invalid web chat session.", status=403) from None
    if not isinstance(claims, dict) or claims.get("a") != account.pk:
        raise SignatureError("This session belongs to another widget.", status=403)
    return claims


class WebchatAdapter(ChannelAdapter):
    channel = "webchat"
    kept_headers = ("content-type", "user-agent", SESSION_HEADER)
    trusts_sender_email = False  # anyone can type any address into the widget
    # The widget shows a message id once (static/webchat/widget.js keeps the ids it saw).
    deduplicates_sends = True
    # Files: the widget opens each through the visitor's own session
    # (``api-webchat-file``); as many and as big as an e-mail reply takes.
    reply_limits = ReplyLimits(
        files=True, files_max_count=10, file_max_bytes=20_000_000, files_max_total_bytes=20_000_000
    )

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        session_read(account, request.header(SESSION_HEADER))

    def check_well_formed(self, request: WebhookRequest) -> None:
        data = json_body(request.body)
        if not isinstance(data, dict):
            raise MalformedPayload("Expected a JSON object.")
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise MalformedPayload("'text' is required and must be a non-empty string.")
        if len(text) > MAX_TEXT:
            raise MalformedPayload(f"'text' is longer than {MAX_TEXT} characters.")
        client_id = data.get("client_id")
        if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64:
            raise MalformedPayload("'client_id' is required (8 to 64 characters).")

    def delivery_id(self, request: WebhookRequest) -> str:
        # Runs right after verify(): the signature (and expiry) were checked there.
        claims = signing.loads(request.header(SESSION_HEADER), salt=SESSION_SALT)
        return f"{claims['v']}:{json_body(request.body)['client_id']}"

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        # Accepted while the session was valid; processing (or a re-drive) may come later.
        claims = session_read(account, request.header(SESSION_HEADER), check_expiry=False)
        data = json_body(request.body)
        metadata = {"page_url": str(data.get("page_url", ""))[:500]}
        if claims.get("e"):
            metadata["claimed_email"] = str(claims["e"])[:254]
        return [
            InboundMessage(
                external_message_id=f"{claims['v']}:{data['client_id']}",
                sender_id=claims["v"],
                sender_name=claims.get("n", ""),
                sender_email="",  # a claim, not an identity: see the module docstring
                text=data["text"].strip(),
                subject=f"Web chat: {data['text'].strip()[:80]}",
                metadata=metadata,
            )
        ]

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        layer = get_channel_layer()
        payload: dict[str, Any] = {
            "type": "webchat.message",
            "message": {
                "id": outbound.message_id,
                "from": "agent",
                "text": outbound.text,
                # the widget fetches each with the visitor's session (api-webchat-file)
                "files": [
                    {
                        "id": f.attachment_id,
                        "name": f.filename,
                        "type": f.content_type,
                        "size": f.size,
                    }
                    for f in outbound.files
                ],
            },
        }
        if layer is not None:
            async_to_sync(layer.group_send)(visitor_group(outbound.recipient_id), payload)
        return SendResult(
            external_message_id=(
                f"{visitor_message_prefix(outbound.recipient_id)}out-{outbound.message_id}"
            ),
            request_body=payload["message"],
            delivered=True,
        )
