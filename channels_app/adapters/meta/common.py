"""What Meta's platforms (WhatsApp Cloud API, Messenger, Instagram) share:
the ``X-Hub-Signature-256`` check, the ``hub.challenge`` handshake and the Graph API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.conf import settings

from channels_app.adapters.base import (
    ChannelAdapter,
    SignatureError,
    WebhookRequest,
    constant_time_equal,
    hmac_sha256,
)

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount


def graph_url(path: str) -> str:
    base = str(getattr(settings, "META_GRAPH_API_BASE", "https://graph.facebook.com"))
    version = str(getattr(settings, "META_GRAPH_API_VERSION", "v21.0"))
    return f"{base.rstrip('/')}/{version}/{path.lstrip('/')}"


def meta_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256(secret, body).hex()


class MetaAdapter(ChannelAdapter):
    kept_headers = ("content-type", "user-agent", "x-hub-signature-256")

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        given = request.header("x-hub-signature-256")
        if not given:
            raise SignatureError("Missing X-Hub-Signature-256 header.", status=401)
        if not account.app_secret:
            raise SignatureError("This account has no app secret configured.", status=403)
        if not constant_time_equal(given, meta_signature(account.app_secret, request.body)):
            raise SignatureError("X-Hub-Signature-256 does not match the body.", status=403)

    def handshake(self, account: ChannelAccount, query: Mapping[str, str]) -> tuple[int, str, str]:
        mode = query.get("hub.mode", "")
        token = query.get("hub.verify_token", "")
        challenge = query.get("hub.challenge", "")
        if mode != "subscribe" or not challenge:
            return 400, "Expected hub.mode=subscribe and hub.challenge.", "text/plain"
        if not account.verify_token or not constant_time_equal(token, account.verify_token):
            return 403, "hub.verify_token does not match.", "text/plain"
        return 200, challenge, "text/plain"

    def auth_headers(self, account: ChannelAccount) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.access_token}"}
