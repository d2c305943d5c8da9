from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.routing import URLRouter

from channels_app.adapters.webchat.adapter import session_issue
from channels_app.tests.conftest import make_account
from support.websocket_urls import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """A minimal websocket test client (channels.testing needs daphne, not installed)."""

    def __init__(self, app: Any, path: str) -> None:
        route, _, query = path.partition("?")
        scope = {
            "type": "websocket",
            "path": route,
            "query_string": query.encode(),
            "headers": [],
            "subprotocols": [],
        }
        self.comm = ApplicationCommunicator(app, scope)

    async def connect(self) -> tuple[bool, int | None]:
        await self.comm.send_input({"type": "websocket.connect"})
        out = await self.comm.receive_output(5)
        return out["type"] == "websocket.accept", out.get("code")

    async def send_json_to(self, data: Any) -> None:
        await self.comm.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 5) -> Any:
        out = await self.comm.receive_output(timeout)
        return json.loads(out["text"])

    async def disconnect(self) -> None:
        await self.comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.comm.wait(1)


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


async def test_forged_session_is_closed() -> None:
    account: Any = await database_sync_to_async(make_account)("webchat")
    communicator = Socket(
        URLRouter(websocket_urlpatterns), f"/ws/webchat/{account.webhook_token}/?session=forged"
    )
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4403
