"""Webhook deliveries without Django's request handling.

The most frequent request the product gets is a channel POSTing one delivery. Through
Django it paid for the middleware stack, request and response objects and a hop through
the WSGI thread pool: twice the CPU of the work itself (verify the signature, one INSERT).
This ASGI wrapper answers ``POST /api/webhooks/<channel>/<token>`` for the JSON channels
itself, running the very functions the Django view runs (``views.webhook_admit``: rate
limit and account; ``views.webhook_record``: signature and record) in a small thread
pool, and passes everything else on.

What the skipped middleware did is done here or handed back to Django: a Host outside
``ALLOWED_HOSTS`` or, with ``SECURE_SSL_REDIRECT``, a request that did not arrive over
HTTPS goes to Django (which refuses or redirects it); responses carry
``X-Content-Type-Options: nosniff``. E-mail (multipart) and web chat (CORS) stay on the
Django view.

Nothing is read before it must be: a ``Content-Length`` over the channel's cap
(``views.webhook_body_limit``, about 1 MB) is answered 413 at once; then the rate limit
and the account token are checked (``views.webhook_admit``), and only then is the body
read, into a bytearray, stopping with a 413 as soon as it passes the cap (a chunked body
has no ``Content-Length`` to check first).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from django.urls import resolve

from channels_app.api.views import (
    webhook_admit,
    webhook_body_limit,
    webhook_record,
    webhook_too_large,
)
from channels_app.models import ChannelAccount
from support.errors import error_body
from support.parsing import content_length
from support.request_metrics import request_record
from support.throttling import client_ip_from_meta

logger = logging.getLogger(__name__)

Result = tuple[int, dict[str, Any], dict[str, str]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PATH = re.compile(
    r"^/api/webhooks/(?P<channel>whatsapp|messenger|instagram|twitter)/(?P<token>[^/\x00]+)$"
)


class WebhookFastPath:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], threads: int):
        self.app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="webhook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            PATH.match(scope.get("path", ""))
            if scope["type"] == "http" and scope.get("method") == "POST"
            else None
        )
        headers = _headers(scope) if match else {}
        if match is None or not _acceptable(scope, headers):
            await self.app(scope, receive, send)
            return
        # Counted under the route Django would have matched (support/request_metrics.py).
        started = time.perf_counter()
        status = await self._deliver(match, scope, headers, receive, send)
        if status is not None:
            request_record(webhook_route(), "POST", status, time.perf_counter() - started)

    async def _deliver(
        self,
        match: re.Match[str],
        scope: Scope,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> int | None:
        """Answer one delivery; the status sent, or None when the client went away."""
        channel, token = match["channel"], match["token"]
        limit = webhook_body_limit(channel)
        declared = content_length(headers.get("content-length"))
        if declared is not None and declared > limit:
            return await _respond(send, *webhook_too_large(channel))
        client = scope.get("client") or ("unknown", 0)
        ip = client_ip_from_meta(
            {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
        )
        loop = asyncio.get_running_loop()
        admitted = await loop.run_in_executor(self.executor, _admit, channel, token, ip)
        if isinstance(admitted, tuple):
            return await _respond(send, *admitted)
        body = await _read_body(receive, limit)
        if body is Unread.DISCONNECTED:
            return None
        if body is Unread.TOO_LARGE:
            return await _respond(send, *webhook_too_large(channel))
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        code, payload, extra = await loop.run_in_executor(
            self.executor, _record, channel, admitted, headers, body, query
        )
        return await _respond(send, code, payload, extra)


class Unread(enum.Enum):
    DISCONNECTED = "the client went away"
    TOO_LARGE = "the body passed the cap"


async def _read_body(receive: Receive, limit: int) -> bytes | Unread:
    """The body; ``TOO_LARGE`` as soon as it passes ``limit`` (the rest is never read)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return Unread.DISCONNECTED
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > limit:
            return Unread.TOO_LARGE
        body += chunk
        if not message.get("more_body"):
            return bytes(body)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _acceptable(scope: Scope, headers: dict[str, str]) -> bool:
    """False hands the request to Django, whose middleware refuses or redirects it."""
    host, _ = split_domain_port(headers.get("host", ""))
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not host or not validate_host(host, allowed):
        return False
    if settings.SECURE_SSL_REDIRECT:
        proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        forwarded = (
            proxy is not None
            and headers.get(proxy[0].removeprefix("HTTP_").replace("_", "-").lower()) == proxy[1]
        )
        return scope.get("scheme") == "https" or forwarded
    return True


def _admit(channel: str, token: str, ip: str) -> ChannelAccount | Result:
    close_old_connections()  # what Django does around each request
    try:
        return webhook_admit(channel, token, ip=ip)
    except Exception:
        logger.exception("Webhook delivery for %s failed", channel)
        return 500, error_body("server_error", "Something went wrong on our side."), {}
    finally:
        close_old_connections()


def _record(
    channel: str,
    account: ChannelAccount,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str],
) -> Result:
    close_old_connections()
    try:
        return webhook_record(account, headers=headers, body=body, query=query)
    except Exception:
        logger.exception("Webhook delivery for %s failed", channel)
        return 500, error_body("server_error", "Something went wrong on our side."), {}
    finally:
        close_old_connections()


@functools.cache
def webhook_route() -> str:
    """The route pattern of the Django view the fast path stands in for."""
    return str(resolve("/api/webhooks/whatsapp/token").route)


async def _respond(send: Send, code: int, payload: dict[str, Any], extra: dict[str, str]) -> int:
    data = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()],
    ]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": data})
    return code
