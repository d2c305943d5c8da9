"""The one JSON websocket consumer base: frames are read with ``support.parsing.json_loads``
(UTF-8, depth-limited), so a frame that is not JSON, or nested too deeply, gets an error
frame and the socket stays open, instead of an exception that closes it (Channels' own
``decode_json`` is a plain ``json.loads``: a 2 KB ``[[[…]]]`` raised ``RecursionError``).

A frame longer than ``max_frame_chars`` is refused the same way before it is parsed: a
frame is parsed on the event loop, which every socket and request of the process shares,
and uvicorn takes frames up to 16 MiB (12 MB of ``[{"a":1},…]`` took 0.55 s to decode,
then the depth walk; the web chat's per-session limit only counts frames once parsed)."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from support.parsing import UnreadableJson, json_loads

#: Characters in the largest frame a socket parses (web chat messages are at most 5,000).
WS_FRAME_MAX_CHARS = 65_536


class JsonConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    max_frame_chars = WS_FRAME_MAX_CHARS

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.send_json({"type": "error", "message": "Send JSON text frames."})
            return
        if len(text_data) > self.max_frame_chars:
            await self.send_json(
                {
                    "type": "error",
                    "code": "too_large",
                    "message": f"The frame is longer than {self.max_frame_chars} characters.",
                }
            )
            return
        try:
            content = json_loads(text_data, what="The frame")
        except UnreadableJson as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            return
        await self.receive_json(content, **kwargs)
