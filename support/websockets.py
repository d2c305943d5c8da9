"""The one JSON websocket consumer base: frames are read with ``support.parsing.json_loads``
(UTF-8, depth-limited), so a frame that is not JSON, or nested too deeply, gets an error
frame and the socket stays open, instead of an exception that closes it (Channels' own
``decode_json`` is a plain ``json.loads``: a 2 KB ``[[[…]]]`` raised ``RecursionError``)."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from support.parsing import UnreadableJson, json_loads


class JsonConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.send_json({"type": "error", "message": "Send JSON text frames."})
            return
        try:
            content = json_loads(text_data, what="The frame")
        except UnreadableJson as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        await self.receive_json(content, **kwargs)
