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
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection

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


# --- calling such a URL: the address actually connected to is checked too -----------------


class UnsafeUrlError(ValueError):
    """The server refused to call a URL (:func:`public_url_error` said why)."""


class _PeerRefused(OSError):
    """Raised inside the connection when the connected address is not public."""


def _peer_check(sock: socket.socket) -> None:
    address = str(sock.getpeername()[0])
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        sock.close()
        raise _PeerRefused(
            f"the host resolved to an internal address when connecting ({ip}: a private,"
            " loopback or reserved range)"
        )


class _CheckedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _peer_check(sock)
        return sock


class _CheckedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _peer_check(sock)
        return sock


class _CheckedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _PublicOnlyAdapter(requests.adapters.HTTPAdapter):
    """Connections whose peer address is checked right after ``connect()``: a name that
    resolved to a public address for :func:`public_url_error` and to an internal one a
    moment later (DNS rebinding) is refused before a byte is sent."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPConnectionPool,
            "https": _CheckedHTTPSConnectionPool,
        }


def _peer_refusal(exc: BaseException) -> _PeerRefused | None:
    """The :class:`_PeerRefused` somewhere inside what requests raised, if any."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _PeerRefused):
            return item
        pending.extend(
            [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
        )
    return None


#: The most of an answer :func:`public_post` reads: the receivers it calls (alert targets,
#: outgoing webhooks, chatbot callbacks) acknowledge; their answer is recorded, not parsed.
PUBLIC_ANSWER_MAX_BYTES = 64 * 1024


def public_post(
    url: str,
    *,
    timeout: float,
    allow_http: bool = False,
    allow_private: bool = False,
    resolve: Resolver | None = None,
    max_bytes: int = PUBLIC_ANSWER_MAX_BYTES,
    **kwargs: Any,
) -> requests.Response:
    """POST to a URL that a client or supervisor registered: the one way the server calls
    such URLs. :func:`public_url_error` first (raises :class:`UnsafeUrlError`), then the
    request on a connection whose peer address is checked again after connecting (so DNS
    rebinding between the check and the call is refused), never following redirects.
    The answer is read whole within ``timeout`` seconds and up to ``max_bytes``
    (``support.outbound.body_read_bounded``: a trickle of bytes is ``AnswerTooSlow``, a
    timeout; a larger answer ``AnswerTooLarge``, never read whole into memory).
    Other failures are requests' own exceptions (timeouts, refused connections)."""
    # here, not at the top: support.auth.tokens imports this module while DRF's settings
    # load, and support.outbound reaches DRF
    from support.outbound import response_read_bounded

    problem = public_url_error(
        url, allow_http=allow_http, allow_private=allow_private, resolve=resolve
    )
    if problem is not None:
        raise UnsafeUrlError(problem)
    kwargs["allow_redirects"] = False
    kwargs["stream"] = True
    with requests.Session() as session:
        session.trust_env = False  # a proxy would be the peer: the check would be meaningless
        if not allow_private:
            adapter = _PublicOnlyAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        try:
            response = session.post(url, timeout=timeout, **kwargs)
            return response_read_bounded(response, max_bytes=max_bytes, seconds=timeout)
        except requests.RequestException as exc:
            refused = _peer_refusal(exc)
            if refused is not None:
                raise UnsafeUrlError(str(refused)) from exc
            raise
