"""Agents online: live workbench sockets counted in Redis (tickets/online.py)."""

from __future__ import annotations

import time

import pytest

from support.redis_client import get_redis
from tickets.consumers import WorkbenchConsumer
from tickets.online import ONLINE_KEY, ONLINE_TTL, agent_online_touch, agents_online_ids
from tickets.tests.ws import WebsocketCommunicator


@pytest.fixture(autouse=True)
def _clean() -> None:
    get_redis().delete(ONLINE_KEY)


def test_stale_entries_drop_out():
    agent_online_touch(user_id=7, connection="a")
    assert agents_online_ids() == {7}
    assert agents_online_ids(now=time.time() + ONLINE_TTL + 1) == set()


@pytest.mark.django_db(transaction=True)
async def test_socket_counts_as_online_until_it_closes(agent):
    communicator = WebsocketCommunicator(WorkbenchConsumer.as_asgi(), "/ws/workbench/")
    communicator.scope["user"] = agent
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    assert agents_online_ids() == {agent.pk}
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()
    assert agents_online_ids() == set()
