"""Web chat: our embeddable widget. Visitors hold a server-signed session token;
agent replies go out over the Channels layer (websocket) and stay pollable."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import signing

from channels_app.adapters.base import (
    ChannelAdapter,
    Event,
    InboundMessage,
    MalformedPayload,
    OutboundRequest,
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


def visitor_group(visitor_id: str) -> str:
    return f"webchat-{visitor_id}"


def session_issue(account: ChannelAccount, *, name: str, email: str) -> dict[str, str]:
    visitor_id = "v_" + secrets.token_hex(12)
    token = signing.dumps(
        {"a": account.pk, "v": visitor_id, "n": name[:200], "e": email[:254]}, salt=SESSION_SALT
    )
    return {"visitor_id": visitor_id, "session": token}


def session_read(account: ChannelAccount, token: str) -> dict[str, Any]:
    """The session's claims; ``SignatureError`` when forged or for another widget."""
    if not token:
        raise SignatureError("Missing web chat session.", status=401)
    try:
        claims = signing.loads(token, salt=SESSION_SALT)
    except signing.BadSignature:
        raise SignatureError("Invalid web chat session.", status=403) from None
    if not isinstance(claims, dict) or claims.get("a") != account.pk:
        raise SignatureError("This session belongs to another widget.", status=403)
    return claims


class WebchatAdapter(ChannelAdapter):
    channel = "webchat"
    kept_headers = ("content-type", "user-agent", SESSION_HEADER)

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
        claims = signing.loads(request.header(SESSION_HEADER), salt=SESSION_SALT)
        return f"{claims['v']}:{json_body(request.body)['client_id']}"

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        claims = session_read(account, request.header(SESSION_HEADER))
        data = json_body(request.body)
        return [
            InboundMessage(
                external_message_id=f"{claims['v']}:{data['client_id']}",
                sender_id=claims["v"],
                sender_name=claims.get("n", ""),
                sender_email=claims.get("e", ""),
                text=data["text"].strip(),
                subject=f"Web chat: {data['text'].strip()[:80]}",
                metadata={"page_url": str(data.get("page_url", ""))[:500]},
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
            },
        }
        if layer is not None:
            async_to_sync(layer.group_send)(visitor_group(outbound.recipient_id), payload)
        return SendResult(
            external_message_id=f"webchat-out-{outbound.message_id}",
            request_body=payload["message"],
            delivered=True,
        )
