"""Facebook Messenger (Messenger Platform webhooks, Send API)."""

from __future__ import annotations

from channels_app.adapters.base import ReplyLimits
from channels_app.adapters.meta.messaging import MessagingPlatformAdapter


class MessengerAdapter(MessagingPlatformAdapter):
    channel = "messenger"
    object_name = "page"
    label = "Messenger"
    # Send API ``message.text``: UTF-8, at most 2,000 characters; attachments (image,
    # audio, video, file) up to 25 MB, one per message (docs/channels.md).
    reply_limits = ReplyLimits(
        text_max_chars=2000, files=True, files_max_count=10, file_max_bytes=25_000_000
    )
