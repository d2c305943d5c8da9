"""A minimal websocket test client (``channels.testing`` imports daphne, which we do not
install): the same calls as channels' ``WebsocketCommunicator``; and the application
communicator every socket test uses, whose ``wait`` cannot wait for ever."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote, urlparse

from asgiref.testing import ApplicationCommunicator

#: seconds to wait for the application after each cancel, and the cancels tried
CANCEL_WAIT = 2.0
CANCEL_ROUNDS = 3


class BoundedCommunicator(ApplicationCommunicator):  # type: ignore[misc]
    """asgiref's communicator whose :meth:`wait` is bounded.

    asgiref's ``wait`` cancels the application once its time is up and then waits for it
    without limit. A consumer's channel-layer receive can swallow that cancellation: redis-py
    (8.1) loses a cancel that lands as the receive's ``BZPOPMIN`` is answered (3 of 60
    cancels timed at the answer, in a probe), the receive goes on polling, and the consumer
    waits for it in channels' ``await_many_dispatch``. A test waiting for a consumer that had
    closed its socket (``wait(5)``: cancelled after 5 s, the length of a ``BZPOPMIN``, so
    right at the answer) hung the whole run (docs/operations.md, "A test that hangs"). Here
    the application is cancelled again when it has not ended ``CANCEL_WAIT`` seconds after a
    cancel (a second cancel ends the consumer: channels stops waiting for the receive, which
    the loop's teardown ends); one still running after ``CANCEL_ROUNDS`` fails the test."""

    async def wait(self, timeout: float = 1) -> None:
        """Wait for the application to stop itself, raising its exception; past ``timeout``
        it is cancelled (see the class)."""
        done, _ = await asyncio.wait({self.future}, timeout=timeout)
        if not done:
            for _ in range(CANCEL_ROUNDS):
                self.future.cancel()
                done, _ = await asyncio.wait({self.future}, timeout=CANCEL_WAIT)
                if done:
                    break
            else:
                raise AssertionError(
                    f"The application did not end when cancelled {CANCEL_ROUNDS} times: "
                    f"{self.future!r}"
                )
        if not self.future.cancelled():
            self.future.result()


class WebsocketCommunicator(BoundedCommunicator):
    def __init__(self, application: Any, path: str) -> None:
        parsed = urlparse(path)
        scope = {
            "type": "websocket",
            "path": unquote(parsed.path),
            "query_string": parsed.query.encode(),
            "headers": [],
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept"
        return True, response.get("subprotocol")

    async def send_json_to(self, data: Any) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
