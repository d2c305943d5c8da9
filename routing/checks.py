"""System checks of the routing app (``manage.py check``; ``migrate`` runs them too, so a
bad setting fails the release's migrate task before any process starts with it).
Registered in ``RoutingConfig.ready()``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error

from support.safe_urls import ALLOWED_SCHEMES, MAX_LENGTH, is_http_url

TICKETING_URL_HINT = (
    "Set TICKETING_SYSTEM_URL to the absolute http(s) address routing decisions are POSTed "
    "to (e.g. https://tickets.example.com/api/routing), or leave it empty to switch the "
    "ticketing sync off."
)


def _ticketing_url_problem(url: str) -> str:
    """Why ``url`` is not a URL the sync can POST to, for the message."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "it contains spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        return f"it cannot be parsed ({exc})"
    if not url.lower().startswith(tuple(f"{scheme}://" for scheme in ALLOWED_SCHEMES)):
        if "://" in url:
            return f"its scheme is {parts.scheme!r}, not http or https"
        return "it has no scheme: it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return f"it is over {MAX_LENGTH:,} characters"


def check_ticketing_system_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``TICKETING_SYSTEM_URL`` is empty (the sync is off) or an absolute http(s) URL with a
    host and no spaces (``support.safe_urls.is_http_url``). Before this check a malformed
    one surfaced only at the first sync, as a dead letter per decision."""
    url = settings.TICKETING_SYSTEM_URL
    if not url or is_http_url(url):
        return []
    return [
        Error(
            f"TICKETING_SYSTEM_URL {url!r} is not a URL the ticketing sync can POST to: "
            f"{_ticketing_url_problem(url)}.",
            hint=TICKETING_URL_HINT,
            id="routing.E001",
        )
    ]
