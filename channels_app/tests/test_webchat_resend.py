"""The widget resends a message it has no answer for, over the socket or over HTTP, and
after a reload from what the browser kept (docs/channels.md, "A visitor's message"): the
same ``client_id`` through either transport is one delivery and one message. Every answer
of the widget's HTTP endpoints, errors included, carries its CORS headers (the widget runs
on other origins, where the browser hides an answer without them)."""

from __future__ import annotations

import secrets
from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from django.db import OperationalError
from django.test import Client

from channels_app import tasks
from channels_app.adapters.webchat.adapter import session_issue
from channels_app.models import InboundEvent
from channels_app.tests.conftest import make_account
from channels_app.tests.test_consumer import Socket
from support.websocket_urls import websocket_urlpatterns
from tickets.models import Message

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type, X-Webchat-Session",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Max-Age": "600",
}


def _web() -> Client:
    """A browser with its own address (rate limits are per IP and live in Redis)."""
    return Client(
        REMOTE_ADDR=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.9",
        raise_request_exception=False,
    )


def _post_over_http(account: Any, session: str, text: str, client_id: str) -> Any:
    return _web().post(
        f"/api/webhooks/webchat/{account.webhook_token}",
        data={"text": text, "client_id": client_id},
        content_type="application/json",
        HTTP_X_WEBCHAT_SESSION=session,
    )


def _process_all() -> None:
    for event in InboundEvent.objects.order_by("pk"):
        tasks.inbound_event_process_task.apply(args=(event.pk,), throw=True)


async def _socket(account: Any, session: str) -> Socket:
    communicator = Socket(
        URLRouter(websocket_urlpatterns),
        f"/ws/webchat/{account.webhook_token}/?session={session}",
    )
    assert await communicator.connect() == (True, None)
    return communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["socket", "http"])
async def test_the_same_client_id_over_the_socket_and_over_http_is_one_message(
    first: str,
) -> None:
    """A reload resends what the widget kept: the socket's ack may have been lost after
    the server recorded the message, or an HTTP answer lost on its way back."""
    account = await database_sync_to_async(make_account)("webchat")
    session = session_issue(account, name="Vera", email="vera@example.com")["session"]
    communicator = await _socket(account, session)
    over_http = database_sync_to_async(_post_over_http)
    text, client_id = "Where is my parcel?", "c-" + "ab" * 12

    answers: list[Any] = []
    for transport in [first, "http" if first == "socket" else "socket"]:
        if transport == "socket":
            await communicator.send_json_to({"text": text, "client_id": client_id})
            answers.append(await communicator.receive_json_from())
        else:
            response = await over_http(account, session, text, client_id)
            answers.append((response.status_code, response.json()["status"]))
        # the first delivery processed before the second arrives, as in production
        await database_sync_to_async(_process_all)()
    await communicator.disconnect()

    if first == "socket":
        assert answers == [
            {"type": "ack", "client_id": client_id, "duplicate": False},
            (200, "duplicate"),
        ]
    else:
        assert answers[0] == (200, "accepted")
        assert answers[1] == {"type": "ack", "client_id": client_id, "duplicate": True}
    events = await database_sync_to_async(lambda: list(InboundEvent.objects.all()))()
    assert len(events) == 1
    assert events[0].external_id.endswith(":" + client_id)
    messages = await database_sync_to_async(lambda: list(Message.objects.all()))()
    assert [m.body_text for m in messages] == [text]


@pytest.mark.django_db(transaction=True)
async def test_a_socket_ping_gets_a_pong_and_is_not_a_message(settings: Any) -> None:
    """The widget checks a socket whose ack is late with a ping: a pong says the socket
    works (the message then goes over HTTP, the socket stays). A ping records nothing
    and does not count against the visitor's message limit."""
    settings.WEBCHAT_WS_MESSAGES_PER_MINUTE = 1
    account = await database_sync_to_async(make_account)("webchat")
    session = session_issue(account, name="Vera", email="vera@example.com")["session"]
    communicator = await _socket(account, session)
    for _ in range(3):
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to({"text": "hello", "client_id": "client-ping-1"})
    ack = await communicator.receive_json_from()
    assert ack == {"type": "ack", "client_id": "client-ping-1", "duplicate": False}
    await communicator.disconnect()
    assert await database_sync_to_async(InboundEvent.objects.count)() == 1


@pytest.mark.django_db
def test_a_500_of_a_widget_endpoint_carries_the_cors_headers() -> None:
    """An exception in the view became Django's 500 page outside the view's CORS
    decorator: the browser hid it from the widget (``Failed to fetch``)."""
    account = make_account("webchat")
    web = _web()
    started = web.post(
        f"/api/webchat/{account.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    session = started.json()["session"]
    with mock.patch(
        "channels_app.api.views.selectors.webchat_messages",
        side_effect=OperationalError("the database is restarting"),
    ):
        polled = web.get(
            f"/api/webchat/{account.webhook_token}/messages?after=0",
            HTTP_X_WEBCHAT_SESSION=session,
            HTTP_ORIGIN="https://shop.example.com",
        )
    assert polled.status_code == 500
    assert {name: polled.get(name) for name in CORS} == CORS
    with mock.patch(
        "channels_app.services.inbound_receive",
        side_effect=OperationalError("the database is restarting"),
    ):
        sent = _post_over_http(account, session, "hello", "client-500-1")
    assert sent.status_code == 500
    assert {name: sent.get(name) for name in CORS} == CORS


@pytest.mark.django_db
def test_a_guards_refusal_on_a_widget_path_carries_the_cors_headers() -> None:
    """A NUL in the poll's query is refused (400) by a middleware, before the view."""
    account = make_account("webchat")
    refused = _web().get(f"/api/webchat/{account.webhook_token}/messages?after=%00")
    assert refused.status_code == 400
    assert {name: refused.get(name) for name in CORS} == CORS


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/webchat/{token}/session",
        "/api/webchat/{token}/messages",
        "/api/webchat/{token}/files",
        "/api/webchat/{token}/files/1",
        "/api/webchat/{token}/verify",
        "/api/webchat/{token}/verify/confirm",
        "/api/webhooks/webchat/{token}",
    ],
)
def test_the_widgets_preflights_are_answered(path: str) -> None:
    account = make_account("webchat")
    preflight = _web().options(
        path.format(token=account.webhook_token),
        HTTP_ORIGIN="https://shop.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-webchat-session",
    )
    assert preflight.status_code == 204
    assert {name: preflight.get(name) for name in CORS} == CORS
    assert "Access-Control-Allow-Credentials" not in preflight


@pytest.mark.django_db
def test_other_channels_webhooks_get_no_cors_headers() -> None:
    """Server-to-server deliveries: no browser reads them."""
    account = make_account("whatsapp")
    for response in (
        _web().get(account.webhook_path, HTTP_ORIGIN="https://shop.example.com"),
        _web().options(account.webhook_path, HTTP_ORIGIN="https://shop.example.com"),
    ):
        assert "Access-Control-Allow-Origin" not in response
