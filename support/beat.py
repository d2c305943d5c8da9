"""Celery beat's heartbeat: when beat last sent one of its scheduled tasks.

Beat runs exactly once per deployment, and every periodic job (the sweeps, the SLA checker,
the alarm rules' evaluation) starts from it. Stopped, nothing fails at once: the web answers,
workers answer pings, and work piles up unseen. So beat itself leaves a mark: each scheduled
task it publishes carries Celery's ``celery_beat_task`` header (``celery.beat.Scheduler``),
and a publish signal handler (connected in ``support/celery.py``) writes the time to Redis
when it sees that header. No task or beat entry of its own: the outbox relay's and the
delivery sweep's entries (every 15 s) publish often enough. Only beat's own publishes count
(tasks sent by code, in a request or a worker, carry no such header), so the mark says "beat
is running", not "a worker ran something".

Read by ``/metrics`` (``support_beat_last_run_age_seconds``) and ``/health`` (``beat``,
reported, not checked). Wall-clock seconds, as the per-minute request counts use: the web
and beat tasks' clocks are kept by NTP.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from support.redis_client import get_redis

logger = logging.getLogger(__name__)

#: Redis key holding when beat last published a scheduled task (Unix time, seconds).
#: No expiry: a beat gone for days must read as days, not as "never seen".
BEAT_HEARTBEAT_KEY = "beat:last_published"
#: Celery's mark on every message ``celery.beat.Scheduler.apply_async`` sends.
BEAT_HEADER = "celery_beat_task"
#: Beat publishes a scheduled task every 15 s (``outbox-relay-sweep``, ``delivery-sweep``);
#: five minutes without one is beat stopped (or cut off from Redis), not a slow tick or a
#: restart during a deploy.
BEAT_STALE_SECONDS = 300.0


def beat_heartbeat_record(*, at: float | None = None) -> None:
    """Note that beat published a scheduled task now (``at``: Unix time). Never raises:
    Redis refusing is logged; the task was published, and the next one tries again."""
    try:
        get_redis().set(BEAT_HEARTBEAT_KEY, repr(time.time() if at is None else at))
    except redis.RedisError as exc:
        logger.warning("Could not record beat's heartbeat: %s", type(exc).__name__)


def beat_task_published(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
    """Celery's ``after_task_publish`` signal, in every process that publishes: records
    the heartbeat for the messages beat's scheduler sent (and for nothing else)."""
    if isinstance(headers, dict) and headers.get(BEAT_HEADER):
        beat_heartbeat_record()


def beat_last_run_age() -> float | None:
    """Seconds since beat last published a scheduled task; None when Redis holds no mark
    (beat has not run since Redis was emptied, or never). Redis errors propagate (the
    metric source reports itself down)."""
    raw = get_redis().get(BEAT_HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        published = float(raw)  # type: ignore[arg-type]
    except ValueError:
        return None
    return max(0.0, time.time() - published)


def beat_summary() -> dict[str, Any]:
    """``/health``'s ``beat``: the age of the mark and whether it is older than
    ``BEAT_STALE_SECONDS`` (no mark at all is stale too: beat has not been seen). Reported,
    not checked: see ``support.health``."""
    try:
        age = beat_last_run_age()
    except redis.RedisError as exc:
        return {"error": type(exc).__name__}
    return {
        "last_run_age_seconds": None if age is None else round(age, 1),
        "stale": age is None or age > BEAT_STALE_SECONDS,
    }
