from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter

from channels_app.adapters.webchat.adapter import session_issue
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from support.websocket_urls import websocket_urlpatterns
from tickets.models import Message
from tickets.tests.ws import BoundedCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """A minimal websocket test client (channels.testing needs daphne, not installed)."""

    def __init__(self, app: Any, path: str, subprotocols: list[str] | None = None) -> None:
        route, _, query = path.partition("?")
        scope = {
            "type": "websocket",
            "path": route,
            "query_string": query.encode(),
            "headers": [],
            "subprotocols": subprotocols or [],
        }
        self.comm = BoundedCommunicator(app, scope)
        self.subprotocol: str | None = None

    async def connect(self) -> tuple[bool, int | None]:
        await self.comm.send_input({"type": "websocket.connect"})
        out = await self.comm.receive_output(5)
        self.subprotocol = out.get("subprotocol")
        return out["type"] == "websocket.accept", out.get("code")

    async def send_json_to(self, data: Any) -> None:
        await self.comm.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 5) -> Any:
        out = await self.comm.receive_output(timeout)
        return json.loads(out["text"])

    async def disconnect(self) -> None:
        await self.comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.comm.wait(1)


async def _visitor_socket(account: Any, name: str = "Vera") -> tuple[Socket, dict[str, Any]]:
    """A connected web chat socket of a new visitor of ``account``, and its session."""
    issued = session_issue(account, name=name, email="vera@example.com")
    communicator = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/?session={issued['session']}",
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator, issued


async def test_visitor_sends_over_the_websocket_and_receives_agent_replies() -> None:
    account = await database_sync_to_async(make_account)("webchat")
    issued = session_issue(account, name="Vera", email="vera@example.com")
    app = URLRouter(websocket_urlpatterns)
    path = f"/ws/webchat/{account.webhook_token}/?session={issued['session']}"
    communicator = Socket(app, path)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"text": "Hello from the widget", "client_id": "client-ws-01"})
    ack = await communicator.receive_json_from(timeout=5)
    assert ack == {"type": "ack", "client_id": "client-ws-01", "duplicate": False}
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(
        f"webchat-{issued['visitor_id']}",
        {"type": "webchat.message", "message": {"id": 1, "from": "agent", "text": "Hi!"}},
    )
    pushed = await communicator.receive_json_from(timeout=5)
    assert pushed == {"type": "message", "message": {"id": 1, "from": "agent", "text": "Hi!"}}
    await communicator.disconnect()


def _as_subprotocol(session: str) -> list[str]:
    """What the widget offers: the session in the handshake header, its ":" written "."."""
    return ["webchat", "session." + session.replace(":", ".")]


async def test_the_session_travels_in_the_subprotocol_header_not_the_url() -> None:
    account = await database_sync_to_async(make_account)("webchat")
    issued = session_issue(account, name="Vera", email="vera@example.com")
    assert ":" in issued["session"]
    socket = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/",
        subprotocols=_as_subprotocol(issued["session"]),
    )
    assert await socket.connect() == (True, None)
    # accepted with the subprotocol the widget offered (a browser fails a handshake that
    # names none of the offered ones), never with the one carrying the token
    assert socket.subprotocol == "webchat"
    await socket.send_json_to({"text": "Hello over the header", "client_id": "client-sp-01"})
    ack = await socket.receive_json_from(timeout=5)
    assert ack == {"type": "ack", "client_id": "client-sp-01", "duplicate": False}
    await socket.disconnect()
    # a forged token is refused the same way as in the query string
    forged = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/",
        subprotocols=_as_subprotocol(issued["session"][:-4] + "AAAA"),
    )
    assert await forged.connect() == (False, 4403)
    # and no token at all is a missing session
    bare = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/",
        subprotocols=["webchat"],
    )
    assert await bare.connect() == (False, 4401)


async def test_widget_scripts_from_before_still_send_the_session_in_the_query() -> None:
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)  # ?session=… and no subprotocol
    assert communicator.subprotocol is None
    await communicator.disconnect()


def test_the_widget_opens_its_socket_with_the_session_in_the_subprotocol() -> None:
    from pathlib import Path

    widget = (Path(__file__).resolve().parents[2] / "static/webchat/widget.js").read_text()
    assert "?session=" not in widget
    assert '["webchat", "session." + state.session.replace(/:/g, ".")]' in widget


async def test_forged_session_is_closed() -> None:
    account: Any = await database_sync_to_async(make_account)("webchat")
    communicator = Socket(
        URLRouter(websocket_urlpatterns), f"/ws/webchat/{account.webhook_token}/?session=forged"
    )
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403


def _signing_clock(at: float) -> Any:
    return mock.patch("django.core.signing.time", mock.Mock(time=mock.Mock(return_value=at)))


def _rate_clock() -> Any:
    """A fixed rate-limit window (no minute boundary in the middle of a test)."""
    return mock.patch("support.throttling.time", mock.Mock(time=mock.Mock(return_value=1.8e9)))


async def test_expired_session_is_refused_with_4401() -> None:
    account: Any = await database_sync_to_async(make_account)("webchat")
    with _signing_clock(time.time() - 86400 - 5):
        issued = session_issue(account, name="Vera", email="vera@example.com")
    communicator = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/?session={issued['session']}",
    )
    assert await communicator.connect() == (False, 4401)


async def test_a_session_expiring_while_connected_is_closed() -> None:
    account: Any = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    with _signing_clock(time.time() + 86400 + 5):
        await communicator.send_json_to({"text": "still there?", "client_id": "client-ws-09"})
        frame = await communicator.receive_json_from()
        closed = await communicator.comm.receive_output(5)
    assert frame == {
        "type": "error",
        "code": "session_expired",
        "message": "This web chat session has expired; start a new chat session.",
    }
    assert closed == {"type": "websocket.close", "code": 4401}
    assert not await database_sync_to_async(Message.objects.exists)()


async def test_a_message_flood_gets_error_frames_and_the_socket_stays_up(settings: Any) -> None:
    settings.WEBCHAT_WS_MESSAGES_PER_MINUTE = 3
    account: Any = await database_sync_to_async(make_account)("webchat")
    communicator, issued = await _visitor_socket(account)
    frames = []
    with _rate_clock():
        for n in range(5):
            await communicator.send_json_to({"text": f"spam {n}", "client_id": f"client-fl-{n}"})
            frames.append(await communicator.receive_json_from())
    assert [f["type"] for f in frames] == ["ack", "ack", "ack", "error", "error"]
    assert frames[3]["code"] == "rate_limited"
    assert frames[3]["client_id"] == "client-fl-3"
    assert frames[3]["retry_after"] >= 1
    from channels_app.models import InboundEvent

    assert await database_sync_to_async(InboundEvent.objects.count)() == 3
    # Still connected: replies keep arriving.
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(
        f"webchat-{issued['visitor_id']}",
        {"type": "webchat.message", "message": {"id": 7, "from": "agent", "text": "Slow down"}},
    )
    pushed = await communicator.receive_json_from()
    assert pushed["message"]["text"] == "Slow down"
    await communicator.disconnect()


async def test_a_nul_sent_over_the_websocket_is_kept_as_u_fffd() -> None:
    """The socket takes the webhooks' intake: a NUL (which PostgreSQL text refuses) in the
    text or an older session's name becomes U+FFFD; the message is kept. A client id is
    printable ASCII (it keys the delivery): one with a NUL is refused, as over HTTP."""
    from channels_app.models import InboundEvent
    from channels_app.services import inbound_event_process

    account: Any = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account, name="Ve\x00ra")
    await communicator.send_json_to({"text": "my order\x00 is late", "client_id": "client\x00ws-1"})
    refused = await communicator.receive_json_from()
    assert (refused["type"], refused["code"]) == ("error", "malformed_payload")
    assert "client_id" in refused["message"]
    await communicator.send_json_to({"text": "my order\x00 is late", "client_id": "client-ws-1"})
    ack = await communicator.receive_json_from()
    assert ack["type"] == "ack"
    await communicator.disconnect()

    def process() -> Message:
        event = InboundEvent.objects.exclude(status=InboundStatus.MALFORMED).get(account=account)
        inbound_event_process(event_id=event.pk)
        return Message.objects.select_related("ticket__customer").get(channel="webchat")

    message = await database_sync_to_async(process)()
    assert message.body_text == "my order\ufffd is late"
    assert message.channel_message_id.endswith(":client-ws-1")
    assert message.ticket.customer.name == "Ve\ufffdra"


async def test_a_frame_that_is_not_json_or_too_deep_gets_an_error_and_the_socket_stays() -> None:
    """Frames are read like webhook bodies (``support.websockets.JsonConsumer``): not JSON,
    or a 2 KB ``[[[…]]]`` (RecursionError in Channels' own decoder, which closed the
    socket), is answered with an error frame; the next message is taken."""
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    for frame, says in (("[" * 1000 + "]" * 1000, "nested more than"), ("{oops", "not valid JSON")):
        await communicator.comm.send_input({"type": "websocket.receive", "text": frame})
        error = await communicator.receive_json_from()
        assert error["type"] == "error"
        assert says in error["message"]
    await communicator.send_json_to({"text": "still here", "client_id": "client-deep-1"})
    ack = await communicator.receive_json_from()
    assert ack == {"type": "ack", "client_id": "client-deep-1", "duplicate": False}
    await communicator.disconnect()


async def test_a_frame_too_long_is_refused_before_it_is_parsed() -> None:
    """Frames are parsed on the event loop every socket and request of the process share,
    and uvicorn accepts frames up to 16 MiB; the per-session limit counts a frame only once
    it is parsed."""
    from channels_app.consumers import WEBCHAT_FRAME_MAX_CHARS

    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    frame = json.dumps([{"a": 1}] * 10_000)  # 90,001 characters
    with mock.patch("support.websockets.json_loads") as parse:
        await communicator.comm.send_input({"type": "websocket.receive", "text": frame})
        error = await communicator.receive_json_from()
    assert parse.call_count == 0
    assert error == {
        "type": "error",
        "code": "too_large",
        "message": f"The frame is longer than {WEBCHAT_FRAME_MAX_CHARS} characters.",
    }
    await communicator.send_json_to({"text": "still here", "client_id": "client-long-1"})
    ack = await communicator.receive_json_from()
    assert ack == {"type": "ack", "client_id": "client-long-1", "duplicate": False}
    await communicator.disconnect()


async def test_every_frame_counts_against_the_budget_before_it_is_parsed(
    settings: Any,
) -> None:
    """Pings and junk frames were parsed on the event loop without limit (the message
    limits count messages, once parsed): each frame now spends the socket's budget first,
    a unit per started 1,024 characters; over it the frame is refused unread, and past 20
    refused in a row the socket is closed (1008)."""
    settings.WEBCHAT_WS_FRAME_BURST = 5
    settings.WEBCHAT_WS_FRAME_REFILL_PER_SECOND = 0
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    from support import websockets

    with mock.patch.object(websockets, "json_loads", wraps=websockets.json_loads) as parse:
        await communicator.send_json_to({"type": "ping"})  # 1 unit
        assert await communicator.receive_json_from() == {"type": "pong"}
        await communicator.comm.send_input({"type": "websocket.receive", "text": "x" * 3000})
        assert "not valid JSON" in (await communicator.receive_json_from())["message"]  # 3
        await communicator.comm.send_input({"type": "websocket.receive", "text": "{oops"})
        assert "not valid JSON" in (await communicator.receive_json_from())["message"]  # 5
        await communicator.send_json_to({"type": "ping"})
        refused = await communicator.receive_json_from()
        assert parse.call_count == 3
    assert refused == {
        "type": "error",
        "code": "rate_limited",
        "message": "Too many frames; wait a moment before sending more.",
    }
    for _ in range(19):  # 20 refused in a row: still open
        await communicator.comm.send_input({"type": "websocket.receive", "text": "junk"})
        assert (await communicator.receive_json_from())["code"] == "rate_limited"
    await communicator.comm.send_input({"type": "websocket.receive", "text": "junk"})
    assert await communicator.comm.receive_output(5) == {"type": "websocket.close", "code": 1008}
    await communicator.disconnect()


async def test_the_budget_refills_and_says_when(settings: Any) -> None:
    settings.WEBCHAT_WS_FRAME_BURST = 1
    settings.WEBCHAT_WS_FRAME_REFILL_PER_SECOND = 0.25
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    with mock.patch("support.websockets.monotonic", return_value=1000.0) as clock:
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
        await communicator.send_json_to({"type": "ping"})
        refused = await communicator.receive_json_from()
        assert (refused["code"], refused["retry_after"]) == ("rate_limited", 4)
        clock.return_value = 1004.0
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_a_ping_longer_than_a_control_frame_is_refused() -> None:
    """``{"type": "ping"}`` is 16 characters; one padded to 64 K was parsed and answered."""
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    await communicator.send_json_to({"type": "ping", "pad": "x" * 1100})
    assert await communicator.receive_json_from() == {
        "type": "error",
        "code": "too_large",
        "message": "A ping frame is at most 1024 characters.",
    }
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_frames_longer_than_the_longest_message_are_refused_unparsed() -> None:
    """The longest message the widget sends, every character escaped (``\\u0001``), fits;
    a frame past that (it was read up to 65,536 characters) is refused before parsing."""
    from channels_app.consumers import WEBCHAT_FRAME_MAX_CHARS

    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    longest = json.dumps({"text": "\u0001" * 5000, "client_id": '"' * 64})
    assert len(longest) <= WEBCHAT_FRAME_MAX_CHARS
    await communicator.comm.send_input({"type": "websocket.receive", "text": longest})
    answer = await communicator.receive_json_from()
    assert answer["client_id"] == '"' * 64  # read (the client id's rule refuses it)
    frame = json.dumps({"type": "ping", "pad": "x" * 40_000})
    with mock.patch("support.websockets.json_loads") as parse:
        await communicator.comm.send_input({"type": "websocket.receive", "text": frame})
        error = await communicator.receive_json_from()
    assert parse.call_count == 0
    assert error["code"] == "too_large"
    await communicator.disconnect()


async def test_connects_are_limited_per_address(settings: Any) -> None:
    """Each connect (a widget lookup and a session check) was free for anyone; now limited
    per address like polls. Another address still connects."""
    settings.WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE = 2
    account = await database_sync_to_async(make_account)("webchat")
    session = session_issue(account, name="Vera", email="vera@example.com")["session"]
    path = f"/ws/webchat/{account.webhook_token}/?session={session}"

    def socket_from(ip: str) -> Socket:
        communicator = Socket(URLRouter(websocket_urlpatterns), path)
        communicator.comm.scope["client"] = (ip, 50000)
        return communicator

    results = []
    for _ in range(3):
        communicator = socket_from("198.51.100.7")
        results.append(await communicator.connect())
        if results[-1][0]:
            await communicator.disconnect()
    assert results == [(True, None), (True, None), (False, 4429)]
    other = socket_from("198.51.100.8")
    assert await other.connect() == (True, None)
    await other.disconnect()


async def test_a_message_too_long_to_keep_is_refused_unstored() -> None:
    """A frame within the frame limit can still make a body past what HTTP accepts (the
    text is re-encoded with every accented character escaped); it was kept whole as a
    malformed raw event, as HTTP no longer does."""
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    frame = json.dumps({"text": "\u00e9" * 11_000, "client_id": "client-big-1"}, ensure_ascii=False)
    await communicator.comm.send_input({"type": "websocket.receive", "text": frame})
    error = await communicator.receive_json_from()
    assert error == {
        "type": "error",
        "code": "too_large",
        "message": "The message is too long.",
        "client_id": "client-big-1",
    }
    assert not await database_sync_to_async(InboundEvent.objects.exists)()
    await communicator.disconnect()


async def test_an_addresss_sessions_share_one_message_limit(settings: Any) -> None:
    """Sessions are free (60 a minute per address), each with its own message limit, so an
    address could multiply its messages by opening sessions; now the messages of all its
    sessions count together too. Another address keeps its own."""
    settings.WEBCHAT_WS_MESSAGES_PER_MINUTE = 2
    settings.WEBCHAT_MESSAGES_PER_IP_PER_MINUTE = 3
    account = await database_sync_to_async(make_account)("webchat")

    async def socket_from(ip: str, name: str) -> Socket:
        session = session_issue(account, name=name, email=f"{name}@example.com")["session"]
        communicator = Socket(
            URLRouter(websocket_urlpatterns),
            f"/ws/webchat/{account.webhook_token}/?session={session}",
        )
        communicator.comm.scope["client"] = (ip, 50000)
        assert await communicator.connect() == (True, None)
        return communicator

    frames = []
    with _rate_clock():
        sockets = [await socket_from("198.51.100.7", f"v{n}") for n in range(3)]
        for n, communicator in enumerate(sockets):  # one message each, then one more
            await communicator.send_json_to({"text": "hi", "client_id": f"client-ip-{n}"})
            frames.append(await communicator.receive_json_from())
        await sockets[0].send_json_to({"text": "again", "client_id": "client-ip-3"})
        frames.append(await sockets[0].receive_json_from())
        other = await socket_from("198.51.100.8", "w")
        await other.send_json_to({"text": "hi", "client_id": "client-ip-4"})
        frames.append(await other.receive_json_from())
    assert [f["type"] for f in frames] == ["ack", "ack", "ack", "error", "ack"]
    assert frames[3]["code"] == "rate_limited"
    for communicator in [*sockets, other]:
        await communicator.disconnect()


async def test_a_database_error_gets_a_retry_frame_and_the_socket_stays_open(
    caplog: Any,
) -> None:
    """The database could not record the message (down, restarting): an exception closed
    the socket and the message was lost while the widget showed it sent. Now an error
    frame says to send it again, the socket stays open, and the resend (same client id)
    is recorded once. The log names neither the text nor the database's message."""
    from django.db import OperationalError

    from channels_app import services

    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    real = services.inbound_receive
    calls = []

    def down_once(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("terminating connection: row (my secret order 1234)")
        return real(**kwargs)

    with mock.patch.object(services, "inbound_receive", side_effect=down_once):
        await communicator.send_json_to({"text": "my secret order", "client_id": "client-db-1"})
        error = await communicator.receive_json_from()
        assert error == {
            "type": "error",
            "code": "unavailable",
            "message": "The message could not be sent yet; it will be sent again.",
            "retry": True,
            "client_id": "client-db-1",
        }
        assert not await database_sync_to_async(InboundEvent.objects.exists)()
        await communicator.send_json_to({"text": "my secret order", "client_id": "client-db-1"})
        ack = await communicator.receive_json_from()
        assert ack == {"type": "ack", "client_id": "client-db-1", "duplicate": False}
        await communicator.send_json_to({"text": "my secret order", "client_id": "client-db-1"})
        again = await communicator.receive_json_from()
        assert again == {"type": "ack", "client_id": "client-db-1", "duplicate": True}
    assert len(calls) == 3
    assert await database_sync_to_async(InboundEvent.objects.count)() == 1
    assert "secret" not in caplog.text
    assert "OperationalError" in caplog.text
    await communicator.disconnect()


async def test_a_refused_message_names_its_client_id() -> None:
    """A message refused for good (here: no text) names its client id, so the widget can
    show that one message as not sent, with the reason."""
    account = await database_sync_to_async(make_account)("webchat")
    communicator, _ = await _visitor_socket(account)
    await communicator.send_json_to({"text": "   ", "client_id": "client-bad-1"})
    error = await communicator.receive_json_from()
    assert error == {
        "type": "error",
        "code": "malformed_payload",
        "message": "'text' is required and must be a non-empty string.",
        "client_id": "client-bad-1",
    }
    await communicator.disconnect()


async def test_a_database_error_at_connect_closes_with_try_again_later(caplog: Any) -> None:
    """The database away when a visitor's socket connects: the socket is closed with 1013
    ("try again later": the widget polls and reconnects later), logged in one line without
    the database's message; it was an unhandled exception out of the consumer."""
    from django.db import OperationalError

    from channels_app import consumers

    account: Any = await database_sync_to_async(make_account)("webchat")
    issued = session_issue(account, name="Vera", email="vera@example.com")
    communicator = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/?session={issued['session']}",
    )
    down = OperationalError("terminating connection: row (my secret order 1234)")
    with mock.patch.object(consumers, "_open", side_effect=down):
        assert await communicator.connect() == (False, 1013)
    assert "secret" not in caplog.text
    assert "database error OperationalError" in caplog.text
