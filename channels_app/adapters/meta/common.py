"""What Meta's platforms (WhatsApp Cloud API, Messenger, Instagram) share:
the ``X-Hub-Signature-256`` check, the ``hub.challenge`` handshake and the Graph API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from channels_app.adapters.base import (
    ChannelAdapter,
    SignatureError,
    WebhookRequest,
    constant_time_equal,
    hmac_sha256,
)
from support.errors import PermanentError

if TYPE_CHECKING:
    from channels_app.adapters.base import OutboundRequest
    from channels_app.models import ChannelAccount

#: Meta's messaging window: a free-form message may go out only this long after the
#: customer last wrote (WhatsApp's customer-service window, ``WHATSAPP_WINDOW_HOURS``;
#: Messenger's and Instagram's standard messaging window, which ``messaging_type:
#: RESPONSE`` relies on). Outside it Meta refuses the message for good.
META_WINDOW_HOURS = 24


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

    #: How a refusal outside the window names it, and what it adds (what may be sent now).
    reply_window_name: str = "Meta's messaging window"
    reply_window_hint: str = ""

    def reply_window_hours(self) -> int:
        """How long after the customer's last message a free-form message may go out."""
        return META_WINDOW_HOURS

    def reply_window_open(self, last_inbound_at: datetime | None) -> bool:
        """Within ``reply_window_hours`` of the customer's last message (never: closed)."""
        return last_inbound_at is not None and (
            timezone.now() - last_inbound_at <= timedelta(hours=self.reply_window_hours())
        )

    def reply_window_check(self, outbound: OutboundRequest) -> None:
        """Refuse, before any request, a reply Meta would refuse for good because the
        customer last wrote outside the window: ``PermanentError`` with the reason in words
        and the code ``<channel>_window_closed`` (a dead letter that says why, instead of a
        Graph API error after a request)."""
        if self.reply_window_open(outbound.last_inbound_at):
            return
        hint = f" {self.reply_window_hint}" if self.reply_window_hint else ""
        raise PermanentError(
            f"Not sent: the customer last wrote more than {self.reply_window_hours()} hours "
            f"ago, outside {self.reply_window_name}.{hint}",
            error_code=f"{self.channel}_window_closed",
        )

    def auth_headers(self, account: ChannelAccount) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.access_token}"}
