"""One shared Redis connection pool for direct Redis use (rate limits, health), the one
way to enqueue a task at most once while it is pending, and leases (one holder at a time)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def enqueue_once(flag: str, enqueue: Callable[[], object], *, seconds: int, failed: str) -> None:
    """Call ``enqueue`` (which publishes one task) unless one is already pending: a Redis
    ``SET NX`` flag that the task clears when it starts (``pending_clear``) collapses a
    burst of callers into one task, and a change made while it runs enqueues the next. The
    flag expires after ``seconds`` (a task that was lost). Never raises: Redis or the broker
    down is logged as ``failed`` (say which sweep picks the work up)."""
    try:
        if get_redis().set(flag, 1, nx=True, ex=seconds):
            enqueue()
    except Exception:  # noqa: BLE001 - the caller's change is committed; a sweep follows
        logger.warning(failed)


def pending_clear(flag: str) -> None:
    """The task started: the next caller of ``enqueue_once`` enqueues again."""
    try:
        get_redis().delete(flag)
    except Exception:  # noqa: BLE001 - the flag expires on its own
        logger.warning("Could not clear the pending flag %s", flag)


# Compare-and-act on the holder's token, in one step (a GET then DEL could delete the key
# of a holder that took it in between, after ours expired).
_LEASE_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""
_LEASE_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    """A Redis key held by one holder (a random token) for ``seconds`` unless renewed: what
    one process runs at a time, that frees itself when its holder dies (a key, not a
    database session that a connection pool could keep alive)."""

    def __init__(self, key: str, seconds: int) -> None:
        self.key = key
        self.seconds = seconds
        self.token = uuid.uuid4().hex
        self.renewed = 0.0

    def take(self) -> bool:
        """True when this holder now has it (raises ``redis.RedisError`` when Redis fails)."""
        taken = bool(get_redis().set(self.key, self.token, nx=True, ex=self.seconds))
        self.renewed = time.monotonic() if taken else 0.0
        return taken

    def renew(self) -> bool:
        """Keep it another ``seconds`` (at most every third of them: a call costs a round
        trip); False when it was lost (expired and maybe taken by another) or Redis failed."""
        if time.monotonic() - self.renewed < self.seconds / 3:
            return True
        try:
            kept = bool(get_redis().eval(_LEASE_RENEW, 1, self.key, self.token, self.seconds))
        except redis.RedisError:
            logger.warning("Could not renew the lease %s", self.key)
            return False
        if kept:
            self.renewed = time.monotonic()
        return kept

    def release(self) -> None:
        """Give it up if still ours (it expires anyway when Redis cannot be reached)."""
        try:
            get_redis().eval(_LEASE_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            logger.warning("Could not release the lease %s (it expires by itself)", self.key)
