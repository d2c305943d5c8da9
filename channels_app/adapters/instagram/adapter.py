"""Instagram messaging (Instagram API with the Messenger Platform webhook shape)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels_app.adapters.meta.messaging import MessagingPlatformAdapter

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount


class InstagramAdapter(MessagingPlatformAdapter):
    channel = "instagram"
    object_name = "instagram"
    # lookaside.fbsbx.com/ig_messaging_cdn, and Instagram's own CDN.
    media_hosts: tuple[str, ...] = ("fbcdn.net", "fbsbx.com", "cdninstagram.com")

    def send_path(self, account: ChannelAccount) -> str:
        return f"{account.external_id or 'me'}/messages"
