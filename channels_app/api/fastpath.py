"""Webhook deliveries without Django's request handling.

The most frequent request the product gets is a channel POSTing one delivery. Through
Django it paid for the middleware stack, request and response objects and a hop through
the WSGI thread pool: twice the CPU of the work itself (verify the signature, one INSERT).
This ASGI wrapper answers ``POST /api/webhooks/<channel>/<token>`` for the JSON channels
itself, making the checks the Django view makes in the same order, and passes everything
else on.

One hop to a thread per delivery: the rate limit is counted from the event loop
(``throttling.hit_async``: same bucket, limit and fail-open accounting as the view's
``hit``), the account comes from the process's account cache (a thread looks it up when
the cache has none), and only signature and record (``views.webhook_record``: sync code,
one INSERT) run in the small thread pool. A second hop per delivery (rate limit and
account in a thread, then back to the loop to read the body, then a thread again) had
made each delivery queue twice behind the pool's INSERTs: ack p99 130-140 ms instead of
10-70 ms at 550 deliveries/s (docs/benchmarks.md, webhook intake, 2026-12-03).

What the skipped middleware did is done here or handed back to Django: a Host outside
``ALLOWED_HOSTS`` or, with ``SECURE_SSL_REDIRECT``, a request that did not arrive over
HTTPS goes to Django (which refuses or redirects it); responses carry
``X-Content-Type-Options: nosniff``. E-mail (multipart) and web chat (CORS) stay on the
Django view.

Nothing is read before it must be: a ``Content-Length`` over the channel's cap
(``views.webhook_body_limit``, about 1 MB) is answered 413 at once; then the rate limit
and the account token are checked (as ``views.webhook_admit`` does), and only then is the body
read, into a bytearray, stopping with a 413 as soon as it passes the cap (a chunked body
has no ``Content-Length`` to check first).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from channels_app.api.views import (
    content_length,
    webhook_account,
    webhook_body_limit,
    webhook_rate_limit,
    webhook_rate_limited,
    webhook_record,
    webhook_too_large,
)
from channels_app.models import ChannelAccount
from channels_app.selectors import channel_account_cached
from support.errors import error_body
from support.throttling import client_ip_from_meta, hit_async

logger = logging.getLogger(__name__)

Result = tuple[int, dict[str, Any], dict[str, str]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PATH = re.compile(
    r"^/api/webhooks/(?P<channel>whatsapp|messenger|instagram|twitter)/(?P<token>[^/]+)$"
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
        channel, token = match["channel"], match["token"]
        limit = webhook_body_limit(channel)
        declared = content_length(headers.get("content-length"))
        if declared is not None and declared > limit:
            await _respond(send, *webhook_too_large(channel))
            return
        client = scope.get("client") or ("unknown", 0)
        ip = client_ip_from_meta(
            {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
        )
        wait = await hit_async(*webhook_rate_limit(ip))
        if wait is not None:
            await _respond(send, *webhook_rate_limited(wait))
            return
        loop = asyncio.get_running_loop()
        admitted: ChannelAccount | Result | None
        admitted = channel_account_cached(channel=channel, webhook_token=token)
        if admitted is None:  # not looked up in the last few seconds: the database
            admitted = await loop.run_in_executor(self.executor, _account, channel, token)
            if isinstance(admitted, tuple):
                await _respond(send, *admitted)
                return
        body = await _read_body(receive, limit)
        if body is Unread.DISCONNECTED:
            return
        if body is Unread.TOO_LARGE:
            await _respond(send, *webhook_too_large(channel))
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        code, payload, extra = await loop.run_in_executor(
            self.executor, _record, channel, admitted, headers, body, query
        )
        await _respond(send, code, payload, extra)


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


def _account(channel: str, token: str) -> ChannelAccount | Result:
    close_old_connections()  # what Django does around each request
    try:
        return webhook_account(channel, token)
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


async def _respond(send: Send, code: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
    data = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()],
    ]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": data})
