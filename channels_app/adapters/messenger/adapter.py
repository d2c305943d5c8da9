"""Facebook Messenger (Messenger Platform webhooks, Send API)."""

from __future__ import annotations

from channels_app.adapters.meta.messaging import MessagingPlatformAdapter


class MessengerAdapter(MessagingPlatformAdapter):
    channel = "messenger"
    object_name = "page"
