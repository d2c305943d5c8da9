"""The one JSON websocket consumer base: frames are read with ``support.parsing.json_loads``
(UTF-8, depth-limited), so a frame that is not JSON, or nested too deeply, gets an error
frame and the socket stays open, instead of an exception that closes it (Channels' own
``decode_json`` is a plain ``json.loads``: a 2 KB ``[[[…]]]`` raised ``RecursionError``).

A frame longer than ``max_frame_chars`` is refused the same way before it is parsed: a
frame is parsed on the event loop, which every socket and request of the process shares,
and uvicorn takes frames up to 16 MiB (12 MB of ``[{"a":1},…]`` took 0.55 s to decode,
then the depth walk; the web chat's per-session limit only counts frames once parsed).

Every frame is also counted, before it is parsed, against the socket's frame budget (a
token bucket: ``frame_burst`` units at once, ``frame_refill_per_second`` units back each
second). A frame costs one unit per started ``FRAME_UNIT_CHARS`` characters it would have
parsed (a frame refused unparsed, too long or not text, costs one), so the budget bounds
the parsing work a socket makes, not only its frames: a crafted 64 K frame of ``[[]]`` and
surrogates took 28 to 50 ms to read, and pings or junk frames were never counted. Over the
budget a frame gets a ``rate_limited`` error frame, unread; after ``frame_refusals_max``
refused in a row the socket is closed with 1008 (policy violation).

Frames of the ``control_types`` (a ping, a heartbeat: a type and nothing else) are refused
past ``control_frame_max_chars``. Their type is only known once the frame is parsed; a
consumer whose frames are all that small sets ``max_frame_chars`` to it instead, so that
larger ones are refused before they are parsed."""

from __future__ import annotations

import math
from time import monotonic
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from support.parsing import UnreadableJson, json_loads

#: Characters in the largest frame a socket parses (the web chat lowers it to what its
#: largest message needs).
WS_FRAME_MAX_CHARS = 65_536
#: The characters of a frame one unit of the frame budget pays for.
FRAME_UNIT_CHARS = 1024
#: The largest control frame (a ping, a heartbeat): ``{"type": "ping"}`` is 16 characters.
CONTROL_FRAME_MAX_CHARS = 1024
#: The websocket close code "policy violation" (RFC 6455).
POLICY_VIOLATION = 1008


class JsonConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    max_frame_chars = WS_FRAME_MAX_CHARS
    #: message types that never need more than ``control_frame_max_chars``
    control_types: frozenset[str] = frozenset()
    control_frame_max_chars = CONTROL_FRAME_MAX_CHARS
    #: the frame budget: units at once, and units back a second (see the module's doc)
    frame_burst = 40
    frame_refill_per_second = 2.0
    #: frames refused over the budget in a row before the socket is closed (1008)
    frame_refusals_max = 20

    _frame_tokens: float | None = None
    _frame_at = 0.0
    _frame_limits: tuple[float, float] = (0.0, 0.0)
    _frames_refused = 0
    _frames_closed = False

    def frame_budget(self) -> tuple[float, float]:
        """(burst, refill a second) of the frame budget, read at the socket's first frame;
        a consumer whose limits are settings overrides it (settings are not read at import)."""
        return float(self.frame_burst), float(self.frame_refill_per_second)

    def _frame_spend(self, cost: int) -> float | None:
        """Take ``cost`` units from the budget: None when taken, else the seconds until
        they are there (``math.inf`` when the budget does not refill)."""
        now = monotonic()
        if self._frame_tokens is None:
            self._frame_limits = self.frame_budget()
            self._frame_tokens = self._frame_limits[0]
        else:
            burst, rate = self._frame_limits
            self._frame_tokens = min(burst, self._frame_tokens + (now - self._frame_at) * rate)
        self._frame_at = now
        # a frame never costs more than the whole budget (a small budget still takes the
        # longest frame a consumer reads, once the budget is full)
        cost = min(cost, max(1, int(self._frame_limits[0])))
        if self._frame_tokens >= cost:
            self._frame_tokens -= cost
            return None
        rate = self._frame_limits[1]
        return (cost - self._frame_tokens) / rate if rate > 0 else math.inf

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self._frames_closed:  # closed over the budget: what was already sent is dropped
            return
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        parsed = text_data is not None and size <= self.max_frame_chars
        cost = max(1, math.ceil(size / FRAME_UNIT_CHARS)) if parsed else 1
        wait = self._frame_spend(cost)
        if wait is not None:
            self._frames_refused += 1
            if self._frames_refused > self.frame_refusals_max:
                self._frames_closed = True
                await self.close(code=POLICY_VIOLATION)
                return
            refused: dict[str, Any] = {
                "type": "error",
                "code": "rate_limited",
                "message": "Too many frames; wait a moment before sending more.",
            }
            if math.isfinite(wait):
                refused["retry_after"] = max(1, math.ceil(wait))
            await self.send_json(refused)
            return
        self._frames_refused = 0
        if text_data is None:
            await self.send_json({"type": "error", "message": "Send JSON text frames."})
            return
        if size > self.max_frame_chars:
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
        kind = content.get("type") if isinstance(content, dict) else None
        if (
            isinstance(kind, str)
            and kind in self.control_types
            and size > self.control_frame_max_chars
        ):
            await self.send_json(
                {
                    "type": "error",
                    "code": "too_large",
                    "message": (
                        f"A {kind} frame is at most {self.control_frame_max_chars} characters."
                    ),
                }
            )
            return
        await self.receive_json(content, **kwargs)
