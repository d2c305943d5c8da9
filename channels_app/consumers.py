"""``/ws/webchat/<widget token>/``: the visitor's live chat.

The session token travels in the handshake's ``Sec-WebSocket-Protocol`` header, not in
the URL: the widget offers the subprotocols ``webchat`` and ``session.<token>`` (the token
with its ``:`` separators written as ``.``, since a subprotocol name may not hold a colon),
and the socket is accepted with ``webchat``. A URL is written to access logs (the load
balancer's, a proxy's, the ASGI server's), where a session token would let whoever reads
them post as the visitor until it expires. ``?session=…`` in the query string is still
read, for widget scripts loaded before this change (and kept open in a tab).

The visitor's messages go through the same record-then-process path as webhooks;
agent replies arrive from the outbound delivery as ``webchat.message``.

Close codes: 4401 for a missing or expired session (at connect, or when it expires while
the socket is open: the next message gets a ``session_expired`` error frame, then the
close), 4403 for a forged session or another widget's, 4429 for an address past
``WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE`` connects a minute, 1013 ("try again later")
when the database cannot be reached at connect (the widget polls and reconnects later).
Each session may send
``WEBCHAT_WS_MESSAGES_PER_MINUTE`` messages a minute and each address
``WEBCHAT_MESSAGES_PER_IP_PER_MINUTE`` (over HTTP too); over that a message is refused with
a ``rate_limited`` error frame (``retry_after`` seconds) and the socket stays open.

Every answer to a visitor's message names its ``client_id``: ``ack`` once the message is
recorded, or an ``error`` frame. When the database cannot record it (down, restarting),
the answer is ``{"type": "error", "code": "unavailable", "retry": true, "client_id": …}``
and the socket stays open: the widget keeps the message as "sending" and sends it again
(the ``client_id`` makes a second delivery a duplicate, never a second message). Before,
the exception closed the socket and the message was lost while the widget showed it sent.

``{"type": "ping"}`` is answered ``{"type": "pong"}`` (after the session check, outside the
message limits, nothing recorded): the widget asks when an ack is late, and keeps a socket
that answers (the late message goes over HTTP meanwhile) instead of reopening it.

Before any of that, every frame (a ping, a message, junk that is not JSON) counts against
the socket's frame budget, before it is parsed (``support.websockets.JsonConsumer``:
``WEBCHAT_WS_FRAME_BURST`` units at once, ``WEBCHAT_WS_FRAME_REFILL_PER_SECOND`` back a
second, a unit per started 1,024 characters): over it, a ``rate_limited`` error frame
without a ``client_id``; past 20 refused in a row, the close 1008. A frame longer than
:data:`WEBCHAT_FRAME_MAX_CHARS` (the largest message the widget sends) is refused unparsed,
and a ping longer than 1,024 characters is refused too. The message limits above count
only messages, once parsed: anonymous visitors' pings and junk frames were parsed (28 to
50 ms for a crafted 64 K frame, on the event loop every socket shares) without limit.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from channels_app import selectors, services
from channels_app.adapters.base import MalformedPayload, SignatureError
from channels_app.adapters.webchat.adapter import (
    MAX_TEXT,
    SESSION_HEADER,
    WEBCHAT_MESSAGE_MAX_BYTES,
    session_read,
    visitor_group,
    visitor_send_wait,
)
from support.errors import NotFound
from support.throttling import client_ip_from_meta, hit
from support.websockets import JsonConsumer

logger = logging.getLogger(__name__)

_hit = sync_to_async(hit, thread_sensitive=False)
_send_wait = sync_to_async(visitor_send_wait, thread_sensitive=False)


@database_sync_to_async
def _open(token: str, session: str) -> tuple[Any, dict[str, Any]] | int:
    """(account, claims), or the close code: 4401 missing/expired, 4403 otherwise."""
    try:
        account = selectors.channel_account_get(channel="webchat", webhook_token=token)
        return account, session_read(account, session)
    except NotFound:
        return 4403
    except SignatureError as exc:
        return 4401 if exc.status == 401 else 4403


@database_sync_to_async
def _receive(account: Any, session: str, content: dict[str, Any]) -> dict[str, Any]:
    client_id = content.get("client_id")
    body = json.dumps({"text": content.get("text"), "client_id": client_id})
    if len(body) > WEBCHAT_MESSAGE_MAX_BYTES:  # as over HTTP: not kept (the raw body would be)
        return {
            "type": "error",
            "code": "too_large",
            "message": "The message is too long.",
            "client_id": client_id,
        }
    request = services.webhook_request_build(
        headers={SESSION_HEADER: session, "content-type": "application/json"},
        body=body.encode(),
        query={},
    )
    try:
        _event, created = services.inbound_receive(account=account, request=request)
    except (MalformedPayload, SignatureError) as exc:
        # refused for good (the codes of the HTTP answer): the widget shows it as not sent
        code = "malformed_payload" if isinstance(exc, MalformedPayload) else "invalid_signature"
        return {"type": "error", "code": code, "message": str(exc), "client_id": client_id}
    except DatabaseError as exc:
        # Not recorded: say so, and keep the socket (an exception here closed it, and the
        # widget, showing the message as sent, lost it). Logged without the text (or the
        # error's own message, which may quote the row).
        logger.warning(
            "Web chat message not recorded (account %s): %s; the widget will resend it",
            account.pk,
            type(exc).__name__,
        )
        return {
            "type": "error",
            "code": "unavailable",
            "message": "The message could not be sent yet; it will be sent again.",
            "retry": True,
            "client_id": client_id,
        }
    return {"type": "ack", "client_id": client_id, "duplicate": not created}


#: The websocket close code "try again later" (RFC 6455 registry): the server cannot serve
#: the socket now (its database is away).
TRY_AGAIN_LATER = 1013


def _scope_ip(scope: dict[str, Any]) -> str:
    """The client's address as the HTTP limits take it (``TRUSTED_PROXY_*``)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client") or ("unknown", 0)
    return client_ip_from_meta(
        {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
    )


#: The subprotocol the socket is accepted with, and the prefix of the one carrying the session.
SUBPROTOCOL = "webchat"
SESSION_SUBPROTOCOL_PREFIX = "session."


def _session_from_scope(scope: dict[str, Any]) -> tuple[str, bool]:
    """The session token the visitor sent, and whether the widget offered ``webchat``:
    from the ``session.<token>`` subprotocol, else (older widget scripts) the query
    string."""
    offered = [str(p) for p in scope.get("subprotocols") or ()]
    for protocol in offered:
        if protocol.startswith(SESSION_SUBPROTOCOL_PREFIX):
            token = protocol[len(SESSION_SUBPROTOCOL_PREFIX) :].replace(".", ":")
            return token, SUBPROTOCOL in offered
    query = parse_qs(scope.get("query_string", b"").decode())
    return query.get("session", [""])[0], SUBPROTOCOL in offered


#: The longest frame the socket reads: the widget's message, ``{"text": …, "client_id": …}``
#: (``JSON.stringify``), at its longest. ``MAX_TEXT`` characters, each at most 6 in the
#: frame (``\u0001``, or a lone surrogate's ``\ud800``; other characters go unescaped,
#: ``"`` and ``\`` as 2), a ``client_id`` of at most 64 printable ASCII characters (2
#: each, escaped), and 64 for the keys, quotes and spacing: 30,192. A client escaping every
#: astral character as a surrogate pair (12 for one) past that is refused with
#: ``too_large`` (the widget sends a message whose ack does not come again, over HTTP).
WEBCHAT_FRAME_MAX_CHARS = 6 * MAX_TEXT + 2 * 64 + 64


class WebchatConsumer(JsonConsumer):
    max_frame_chars = WEBCHAT_FRAME_MAX_CHARS
    control_types = frozenset({"ping"})

    def frame_budget(self) -> tuple[float, float]:
        return (
            float(settings.WEBCHAT_WS_FRAME_BURST),
            float(settings.WEBCHAT_WS_FRAME_REFILL_PER_SECOND),
        )

    async def connect(self) -> None:
        # Each connect looks the widget up and checks a session, for anyone: limited per
        # address like polls (WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE); over it, 4429.
        self.ip = _scope_ip(self.scope)
        wait = await _hit(
            f"webchat-ws-connect:{self.ip}", int(settings.WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE)
        )
        if wait is not None:
            await self.close(code=4429)
            return
        token = self.scope["url_route"]["kwargs"]["token"]
        self.session, offered = _session_from_scope(self.scope)
        try:
            opened = await _open(token, self.session)
        except DatabaseError as exc:
            # The database is away (down, restarting): 1013 "try again later", logged
            # without the database's message (it may quote a row); the widget polls and
            # opens a new socket later. It was an unhandled exception (a traceback per
            # connect while the database was down) closing the socket all the same.
            logger.warning(
                "Web chat socket refused at connect: database error %s", type(exc).__name__
            )
            await self.close(code=TRY_AGAIN_LATER)
            return
        if isinstance(opened, int):
            await self.close(code=opened)
            return
        self.account, claims = opened
        self.visitor_id = claims["v"]
        self.group = visitor_group(claims["v"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        # a browser that offered subprotocols fails a handshake that names none of them
        await self.accept(subprotocol=SUBPROTOCOL if offered else None)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            session_read(self.account, self.session)  # still valid? (an HMAC, no I/O)
        except SignatureError as exc:
            await self.send_json({"type": "error", "code": "session_expired", "message": str(exc)})
            await self.close(code=4401)
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            # The widget's check of a socket whose ack is late: a pong says it works, so
            # a slow ack does not cost a reconnect. Nothing recorded, no message counted.
            await self.send_json({"type": "pong"})
            return
        wait = await _send_wait(self.visitor_id, self.ip)
        if wait is not None:
            await self.send_json(
                {
                    "type": "error",
                    "code": "rate_limited",
                    "message": "Too many messages; wait a moment before sending more.",
                    "retry_after": int(wait),
                    "client_id": content.get("client_id") if isinstance(content, dict) else None,
                }
            )
            return
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "message": "Expected a JSON object."})
            return
        await self.send_json(await _receive(self.account, self.session, content))

    async def webchat_message(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": message["message"]})
