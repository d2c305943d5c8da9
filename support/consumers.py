"""``/ws/events/``: the live event stream of the workbench.

Only signed-in agents connect. ``?since=<event id>`` replays what was missed from the
outbox so a reconnecting page has no silent gap; events carry their id so clients
drop duplicates.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from support.auth.roles import is_agent
from support.events import ALL_EVENTS_GROUP
from support.models import OutboxEvent

REPLAY_LIMIT = 1000


@database_sync_to_async
def _replay(since: int) -> list[dict[str, Any]]:
    events = OutboxEvent.objects.filter(id__gt=since, delivered_at__isnull=False).order_by("id")[
        :REPLAY_LIMIT
    ]
    return [event.envelope() for event in events]


@database_sync_to_async
def _may_connect(user: Any) -> bool:
    return is_agent(user)


class EventStreamConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not await _may_connect(user):
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(ALL_EVENTS_GROUP, self.channel_name)
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        since = query.get("since", [""])[0]
        if since.isdigit():
            for event in await _replay(int(since)):
                await self.send_json({"type": "event", "replay": True, "event": event})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(ALL_EVENTS_GROUP, self.channel_name)

    async def event_message(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": message["event"]})
