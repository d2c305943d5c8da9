"""Who has the workbench open: one Redis sorted set of live sockets, scored by when each
last showed a sign of life (connect, heartbeat). Read by the dashboard's "agents online".

A socket that dies without a clean disconnect (a killed process) drops out after
``ONLINE_TTL`` seconds without a heartbeat; the workbench page sends one every 60 s.
"""

from __future__ import annotations

import time

from support.redis_client import get_redis

ONLINE_KEY = "workbench:online"
ONLINE_TTL = 150  # seconds: a bit over two missed heartbeats


def agent_online_touch(*, user_id: int, connection: str) -> None:
    get_redis().zadd(ONLINE_KEY, {f"{user_id}:{connection}": time.time()})


def agent_online_clear(*, user_id: int, connection: str) -> None:
    get_redis().zrem(ONLINE_KEY, f"{user_id}:{connection}")


def agents_online_ids(*, now: float | None = None) -> set[int]:
    """Ids of users with at least one live workbench socket (stale entries pruned)."""
    redis = get_redis()
    cutoff = (now or time.time()) - ONLINE_TTL
    redis.zremrangebyscore(ONLINE_KEY, "-inf", cutoff)
    members = redis.zrangebyscore(ONLINE_KEY, cutoff, "+inf")
    ids: set[int] = set()
    for member in members:
        raw = member.decode() if isinstance(member, bytes) else str(member)
        head = raw.split(":", 1)[0]
        if head.isdigit():
            ids.add(int(head))
    return ids
