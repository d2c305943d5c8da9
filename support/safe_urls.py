"""External URLs that come from data (knowledge-base documents, channel attachments, call
and web chat metadata) are links only when they are plain ``http(s)`` URLs.

A ``javascript:`` or ``data:`` URL in an ``href`` runs in the workbench's origin when an agent
clicks it; browsers also drop tabs and newlines inside a URL (``java\\tscript:``), so any
control character or space refuses it. Use :func:`http_url` wherever such a URL is stored
and the ``http_url`` template filter (``{% load safe_urls %}``) wherever one is rendered.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_LENGTH = 2048


def is_http_url(value: object) -> bool:
    """True for an absolute ``http``/``https`` URL with a host and nothing a browser would
    reinterpret (control characters, spaces)."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return False
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an invalid IPv6 literal
        return False
    return parts.scheme.lower() in ALLOWED_SCHEMES and bool(parts.hostname)


def http_url(value: object) -> str:
    """``value`` (surrounding whitespace removed) when it is a safe http(s) URL, else ``""``."""
    if not isinstance(value, str):
        return ""
    url = value.strip()
    return url if is_http_url(url) else ""
