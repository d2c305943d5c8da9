"""The largest request body any endpoint takes, enforced before the application reads it.

Django parses a multipart body (the CSRF check looks for its form token in any form POST,
signed in or not) into temporary files with no overall limit, and no proxy in front of the
stack limits bodies: an anonymous POST of gigabytes to the sign-in page was written to the
web task's disk. ``REQUEST_MAX_BYTES`` sits above every endpoint's own cap (e-mail webhooks
and attachments, 25 MiB; knowledge uploads, 10 MiB), which still answer with their own
limits; this is the floor under all of them. A ``Content-Length`` over it is answered 413
without calling the application; a body sent without one (chunked) is counted as it
arrives, and the application sees the client leave once it passes the limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from support.errors import PayloadTooLarge, error_body
from support.parsing import content_length

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _where(scope: Scope) -> str:
    """The method and the path's first two segments: webhook paths carry a secret token
    further on, and no secret goes to the logs (nor the query string)."""
    path = str(scope.get("path") or "")
    return f"{scope.get('method')} {'/'.join(path.split('/')[:3])}"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            return content_length(value)
    return None


async def _refuse(send: Send, length: int | None, limit: int) -> None:
    size = f"{length:,} bytes" if length is not None else f"over {limit:,} bytes"
    message = f"The request body is {size}; at most {limit:,} bytes are accepted."
    body = json.dumps(error_body(PayloadTooLarge.code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    """ASGI middleware: HTTP requests whose body is over ``max_bytes`` answer 413."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            logger.warning(
                "Request body of %s bytes refused (REQUEST_MAX_BYTES %s): %s",
                declared,
                self.max_bytes,
                _where(scope),
            )
            await _refuse(send, declared, self.max_bytes)
            return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["over"] = True
                    logger.warning(
                        "Request body over REQUEST_MAX_BYTES %s refused while reading: %s",
                        self.max_bytes,
                        _where(scope),
                    )
                    if not state["started"]:
                        state["started"] = True
                        await _refuse(send, None, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                return  # the 413 went out; what the application answers after is dropped
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
