"""Instagram messaging (Instagram API with the Messenger Platform webhook shape)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels_app.adapters.base import ReplyLimits
from channels_app.adapters.meta.messaging import MessagingPlatformAdapter

if TYPE_CHECKING:
    from channels_app.adapters.base import OutboundRequest
    from channels_app.models import ChannelAccount


class InstagramAdapter(MessagingPlatformAdapter):
    channel = "instagram"
    object_name = "instagram"
    # lookaside.fbsbx.com/ig_messaging_cdn, and Instagram's own CDN.
    media_hosts: tuple[str, ...] = ("fbcdn.net", "fbsbx.com", "cdninstagram.com")
    # Instagram messaging text: at most 1,000 (Meta counts UTF-8 bytes; docs/channels.md).
    reply_limits = ReplyLimits(text_max_chars=1000)
    label = "Instagram"

    def send_path(self, account: ChannelAccount) -> str:
        # POST /<IG professional account or Page id>/messages (Instagram messaging Send API)
        return f"{account.external_id or 'me'}/messages"

    def send_body(self, outbound: OutboundRequest) -> dict[str, Any]:
        """Instagram's documented body: the recipient's Instagram-scoped id (IGSID) and
        the text; no ``messaging_type`` (a Messenger field). Answer:
        ``{"recipient_id": IGSID, "message_id": ...}``."""
        return {"recipient": {"id": outbound.recipient_id}, "message": {"text": outbound.text}}
