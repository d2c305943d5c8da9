"""Importing this module registers every channel adapter."""

from __future__ import annotations

from channels_app.adapters.base import register
from channels_app.adapters.email.adapter import EmailAdapter
from channels_app.adapters.instagram.adapter import InstagramAdapter
from channels_app.adapters.messenger.adapter import MessengerAdapter
from channels_app.adapters.twitter.adapter import TwitterAdapter
from channels_app.adapters.webchat.adapter import WebchatAdapter
from channels_app.adapters.whatsapp.adapter import WhatsAppAdapter

register(WhatsAppAdapter())
register(MessengerAdapter())
register(InstagramAdapter())
register(TwitterAdapter())
register(EmailAdapter())
register(WebchatAdapter())
