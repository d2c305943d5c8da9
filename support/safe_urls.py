"""External URLs that come from data (knowledge-base documents, channel attachments, call
and web chat metadata) are links only when they are plain ``http(s)`` URLs.

A ``javascript:`` or ``data:`` URL in an ``href`` runs in the workbench's origin when an agent
clicks it; browsers also drop tabs and newlines inside a URL (``java\\tscript:``), so any
control character or space refuses it. Use :func:`http_url` wherever such a URL is stored
and the ``http_url`` template filter (``{% load safe_urls %}``) wherever one is rendered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
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


# --- URLs the server itself calls (callbacks registered by clients) ----------------------

Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def public_url_error(
    value: object,
    *,
    allow_http: bool = False,
    allow_private: bool = False,
    resolve_names: bool = True,
    resolve: Resolver | None = None,
) -> str | None:
    """Why the server must not call ``value``, or ``None`` when it may: the one rule for
    URLs that clients or supervisors register and the server then calls (a bot's callback,
    an outgoing webhook).

    Such a URL is a request forgery risk: ``http://127.0.0.1``, ``http://169.254.169.254``
    (cloud metadata) or a name that resolves to an internal address would make this server
    call its own network. Allowed: a safe ``https`` URL (``http`` only with ``allow_http``)
    without credentials in it, whose host is an IP address or a name that resolves, every
    address of it, to a global unicast address (no loopback, private, link-local, shared,
    reserved, multicast or unspecified range); ``allow_private`` skips the address rule.
    ``resolve_names=False`` (a form, where DNS may not be reachable) checks address literals
    and ``localhost`` names only.

    Check when the URL is registered and again right before each call (DNS can change);
    the call itself must not follow redirects."""
    if not is_http_url(value):
        return "not an absolute http(s) URL without spaces or control characters"
    assert isinstance(value, str)
    parts = urlsplit(value)
    if parts.scheme.lower() != "https" and not allow_http:
        return "only https URLs are accepted"
    if parts.username or parts.password:
        return "credentials in the URL are not accepted"
    if allow_private:
        return None
    host = parts.hostname or ""
    if host.lower().rstrip(".") == "localhost" or host.lower().rstrip(".").endswith(".localhost"):
        return f"the host {host!r} is an internal address (a private, loopback or reserved range)"
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return "invalid port"
    if _is_ip(host):
        addresses = [host]
    elif not resolve_names:
        return None
    else:
        try:
            addresses = (resolve or _resolve)(host, port)
        except (OSError, UnicodeError):
            return f"the host {host!r} does not resolve"
    if not addresses:
        return f"the host {host!r} does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            return (
                f"the host {host!r} is an internal address ({ip}: a private, loopback or"
                " reserved range)"
            )
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
