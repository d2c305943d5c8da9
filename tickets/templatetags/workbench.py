"""Small presentation helpers for the workbench templates."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()

CHANNEL_ICONS = {
    "whatsapp": "WA",
    "messenger": "FB",
    "instagram": "IG",
    "twitter": "X",
    "email": "@",
    "webchat": "WC",
    "chatbot": "AI",
    "phone": "☎",
    "api": "API",
}


@register.filter
def channel_icon(channel: str) -> str:
    return CHANNEL_ICONS.get(channel, "?")


@register.filter
def waited(since: datetime | None) -> str:
    """Compact time waiting: 45s, 12m, 3h, 2d."""
    if since is None:
        return ""
    seconds = max(0, int((timezone.now() - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
