"""One shared Redis connection pool for direct Redis use (rate limits, health), and the
one way to enqueue a task at most once while it is pending."""

from __future__ import annotations

import logging
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
