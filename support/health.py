"""Health endpoints, all public (no authentication) and answered whatever the Host header
(``support.middleware.HealthProbeMiddleware`` serves them before the host check):

* ``GET /health/live``: the process is up and answering; no dependency is asked. The
  container's HEALTHCHECK: a restart cannot fix a database outage, so it must not depend
  on one.
* ``GET /health/ready``: the load balancer's probe. 503 only when PostgreSQL is down:
  webhook intake and the API need the database and nothing else (Redis being down delays
  processing, it does not lose anything), so Redis is reported but does not fail it, and
  Celery workers are not asked at all.
* ``GET /health``: the full report for people and monitoring: PostgreSQL, Redis and a live
  Celery worker, each reported, this process's counters of what it let through unchecked
  (``counters``), the outbound deliveries and outbox events that need a person
  (``deliveries``: counts only) and when Celery beat last sent a scheduled task (``beat``).
  503 when any of the three checks is down.

Beat is reported, not checked: ``status`` and the status code stay those of the three
checks, the dependencies a request or a task needs now (the contract a monitor and
``make run`` read). A stopped beat loses nothing at once (work is recorded, and the sweeps
catch up when it is back) but nothing periodic runs, the alarm rules' evaluation included,
so no alarm rule can report it: ``beat.stale`` (no scheduled task sent for
``BEAT_STALE_SECONDS``) and ``support_beat_last_run_age_seconds`` are what a monitor
outside the product watches (docs/operations.md, "Health").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from support.beat import beat_summary
from support.delivery.selectors import delivery_health
from support.fallback import programming_error_count
from support.selectors import outbox_failed_count
from support.throttling import fail_open_count

_celery_cache: dict[str, Any] = {"at": 0.0, "result": None}
_celery_lock = threading.Lock()
CELERY_CACHE_SECONDS = 5.0


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"status": "down", "error": type(exc).__name__}
    finally:
        client.close()
    return {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 1)}


#: The report's counts of deliveries and outbox events, computed at most once per process
#: every ``CELERY_CACHE_SECONDS``: the page is public and they are several queries, so a
#: flood of requests costs a SELECT 1, a Redis PING and GET each, no more.
_report_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _recent(name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    now = time.monotonic()
    cached = _report_cache.get(name)
    if cached is not None and now - cached[0] < CELERY_CACHE_SECONDS:
        return dict(cached[1])
    value = compute()
    _report_cache[name] = (now, value)
    return dict(value)


def deliveries_summary() -> dict[str, Any]:
    """Outbound deliveries and outbox events needing a person (counts only: this page is
    public; each one cheap count, over a partial index or the circuits' small table).
    Reported, not checked: a dead letter, a paused target or an event the relay gave up
    on does not make the service unhealthy."""
    try:
        return {**delivery_health(), "outbox_failed": outbox_failed_count()}
    except DatabaseError as exc:
        return {"error": type(exc).__name__}


def check_celery() -> dict[str, Any]:
    """A worker's answer to a ping, at most one ping per process every
    ``CELERY_CACHE_SECONDS``: while one request pings (up to ``HEALTH_CELERY_TIMEOUT``),
    the others answer with the last result instead of each waiting on a ping of its own
    (the page is public: a burst of requests must not hold every web thread)."""
    now = time.monotonic()
    cached = _celery_cache["result"]
    if cached is not None and now - _celery_cache["at"] < CELERY_CACHE_SECONDS:
        return dict(cached)
    if not _celery_lock.acquire(blocking=cached is None):
        return dict(cached)  # another request is pinging: the last result meanwhile
    try:
        return _celery_ping()
    finally:
        _celery_lock.release()


def _celery_ping() -> dict[str, Any]:
    now = time.monotonic()
    cached = _celery_cache["result"]
    if cached is not None and now - _celery_cache["at"] < CELERY_CACHE_SECONDS:
        return dict(cached)  # pinged by the request this one waited for
    from support.celery import app

    try:
        replies = app.control.ping(timeout=settings.HEALTH_CELERY_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any broker error means "down"
        result: dict[str, Any] = {"status": "down", "error": type(exc).__name__}
    else:
        if replies:
            result = {"status": "ok", "workers": len(replies)}
        else:
            result = {"status": "down", "error": "no worker answered"}
    _celery_cache.update(at=now, result=result)
    return dict(result)


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    parts = {"database": check_database(), "redis": check_redis()}
    if parts["redis"]["status"] == "ok":
        parts["celery"] = check_celery()
    else:
        parts["celery"] = {"status": "down", "error": "broker (Redis) is down"}
    healthy = all(part["status"] == "ok" for part in parts.values())
    return JsonResponse(
        {
            "status": "ok" if healthy else "degraded",
            "checks": parts,
            # Requests this web process let through without a rate-limit check because
            # Redis was unavailable (per process, since it started).
            # Programming errors an LLM fallback met (logged with traceback; per process).
            "counters": {
                "rate_limit_fail_open": fail_open_count(),
                "provider_programming_errors": programming_error_count(),
            },
            # Dead letters waiting for a re-drive, targets paused by their circuit breaker,
            # deliveries that may have reached their recipient twice (admin: Outbound
            # deliveries), outbox events the relay gave up on (admin: Outbox events).
            "deliveries": (
                _recent("deliveries", deliveries_summary)
                if parts["database"]["status"] == "ok"
                else {}
            ),
            # When beat last sent a scheduled task, and whether that is too long ago:
            # reported, not checked (the module's docstring says why).
            "beat": beat_summary() if parts["redis"]["status"] == "ok" else {},
        },
        status=200 if healthy else 503,
    )


@never_cache
@require_GET
def health_live(request: HttpRequest) -> JsonResponse:
    """The process answers HTTP: nothing else is checked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    """Ready for traffic when the database answers; Redis is reported, not required."""
    parts = {"database": check_database(), "redis": check_redis()}
    ready = parts["database"]["status"] == "ok"
    return JsonResponse(
        {"status": "ok" if ready else "down", "checks": parts}, status=200 if ready else 503
    )


#: Served by ``HealthProbeMiddleware`` ahead of the host check (and by the URLconf too).
PROBES = {"/health": health, "/health/live": health_live, "/health/ready": health_ready}
