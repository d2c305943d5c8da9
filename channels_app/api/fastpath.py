"""Webhook deliveries without Django's request handling.

The most frequent request the product gets is a channel POSTing one delivery. Through
Django it paid for the middleware stack, request and response objects and a hop through
the WSGI thread pool: twice the CPU of the work itself (verify the signature, one INSERT).
This ASGI wrapper answers ``POST /api/webhooks/<channel>/<token>`` for the JSON channels
itself, running the very function the Django view runs (``views.webhook_post``: rate
limit, account, signature, record) in a small thread pool, and passes everything else on.

What the skipped middleware did is done here or handed back to Django: a Host outside
``ALLOWED_HOSTS`` or, with ``SECURE_SSL_REDIRECT``, a request that did not arrive over
HTTPS goes to Django (which refuses or redirects it); the body is bounded by
``DATA_UPLOAD_MAX_MEMORY_SIZE``; responses carry ``X-Content-Type-Options: nosniff``.
E-mail (multipart) and web chat (CORS) stay on the Django view.
"""

from __future__ import annotations

import asyncio
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

from support.errors import error_body
from support.throttling import client_ip_from_meta

logger = logging.getLogger(__name__)

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
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _respond(send, 413, error_body("too_large", "The body is too large."), {})
                return
            if not message.get("more_body"):
                break
        client = scope.get("client") or ("unknown", 0)
        ip = client_ip_from_meta(
            {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
        )
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        code, payload, extra = await asyncio.get_running_loop().run_in_executor(
            self.executor, _handle, match["channel"], match["token"], headers, body, query, ip
        )
        await _respond(send, code, payload, extra)


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


def _handle(
    channel: str, token: str, headers: dict[str, str], body: bytes, query: dict[str, str], ip: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    from channels_app.api.views import webhook_post

    close_old_connections()  # what Django does around each request
    try:
        return webhook_post(channel, token, headers=headers, body=body, query=query, ip=ip)
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
