"""Facebook Messenger (Messenger Platform webhooks, Send API)."""

from __future__ import annotations

from channels_app.adapters.base import ReplyLimits
from channels_app.adapters.meta.messaging import MessagingPlatformAdapter


class MessengerAdapter(MessagingPlatformAdapter):
    channel = "messenger"
    object_name = "page"
    # Send API ``message.text``: UTF-8, at most 2,000 characters (docs/channels.md).
    reply_limits = ReplyLimits(text_max_chars=2000)
