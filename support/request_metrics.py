"""Request counts and latency by route, counted in the web processes that serve them.

``support_http_requests_total{route,method,status}`` (counter) and
``support_http_request_duration_seconds{route,method}`` (histogram), exported at
``GET /metrics`` as the ``http`` source (support/metrics.py).

Why counters in the process and not at scrape time like the other sources: requests are not
stored anywhere, and writing each one to PostgreSQL or Redis would add a round trip to every
request (the webhook intake path included). prometheus_client's **multiprocess mode** keeps
each counter in a memory-mapped file per process instead (a few microseconds per request, no
I/O wait): with ``PROMETHEUS_MULTIPROC_DIR`` set, every uvicorn worker writes its own
``*_<pid>.db`` files there and any worker answering a scrape sums them all. scripts/processes.py
sets the directory for the ``web`` process and empties it when the process starts (counters
begin at 0 with each start, which Prometheus' ``rate()`` handles as a restart); files of a
worker that died stay, so totals never go backwards, and the open-connection gauge of a dead
worker is dropped at the next scrape (:func:`dead_process_cleanup`). Without the variable
(tests, ``manage.py runserver``) the values live in this process only.

**Requests per minute in Redis, for the alarm evaluator.** The counters above live in the
web processes' memory (or files), but alarm rules are evaluated by a Celery worker, another
process and, deployed, another ECS task, which can read neither. So each request is also
added to a per-process tally in memory (requests and 5xx answers per clock minute: a lock
and two additions), and a daemon thread of each web process adds the tally to Redis every
:data:`FLUSH_SECONDS` (``HINCRBY`` on a hash per minute that expires after
:data:`KEEP_SECONDS`; ``support.window_counts``): one pipelined round trip per process
every few seconds, never one per request, and never on the request's thread. Redis
unreachable: that tally is dropped and logged (fail open: the requests are unaffected, the
alarm sees fewer requests). The ``http_window`` metric source sums the minutes of the
window (:func:`http_window_metrics`), wherever it runs; the seed's ``Http5xxRate`` rule
divides its two gauges (``alerts`` migration 0003). Counts reach Redis up to
``FLUSH_SECONDS`` after the request, and what a process had not added when it was killed
(SIGKILL) is lost; a clean exit adds it.

Labels stay bounded: ``route`` is the URL pattern the resolver matched
(``api/tickets/<int:pk>``), never the path; a path that matched nothing is ``unmatched``,
static files ``static``, and the paths answered before URL resolution (health probes,
``/metrics``) their own path. ``method`` is one of the HTTP methods or ``other``.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from redis import RedisError

from support.window_counts import window_counts_add, window_counts_sum

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
STATIC = "static"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Not the default registry: these are exported through the ``http`` metric source only.
_registry = CollectorRegistry(auto_describe=False)
REQUESTS = Counter(
    "support_http_requests_total",
    "HTTP requests answered by the web processes, by route pattern, method and status.",
    ["route", "method", "status"],
    registry=_registry,
)
DURATION = Histogram(
    "support_http_request_duration_seconds",
    "Time from the request reaching the application to its response, by route pattern.",
    ["route", "method"],
    buckets=BUCKETS_SECONDS,
    registry=_registry,
)
WEBSOCKETS = Counter(
    "support_websocket_connections_total",
    "Websocket connections the web processes accepted for routing (live workbench).",
    registry=_registry,
)
WEBSOCKETS_OPEN = Gauge(
    "support_websocket_connections_open",
    "Websocket connections open now, summed over the live web processes.",
    registry=_registry,
    multiprocess_mode="livesum",
)

_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def request_record(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request (a dict lookup and three in-memory writes, plus the
    per-minute tally that reaches Redis every few seconds)."""
    if method not in METHODS:
        method = "other"
    key = (route, method, status)
    pair = _children.get(key)
    if pair is None:
        pair = (REQUESTS.labels(route, method, str(status)), DURATION.labels(route, method))
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)
    minute_count(status)


# --- requests per minute in Redis (the alarm evaluator's source) ------------------------

#: The Redis hash of one clock minute (``int(time.time() // 60)``): fields ``n`` (requests)
#: and ``5xx``.
MINUTE_KEY = "metrics:http:{bucket}"
#: How often each web process adds its tally to Redis.
FLUSH_SECONDS = 5.0
#: How long a minute stays readable: the longest window the source answers, and a margin.
MAX_WINDOW_SECONDS = 24 * 3600
KEEP_SECONDS = MAX_WINDOW_SECONDS + 300

_tally: dict[int, list[int]] = {}  # minute -> [requests, 5xx]
_tally_lock = threading.Lock()
_flusher_started = False


def minute_count(status: int, *, at: float | None = None) -> None:
    """Add one request (and whether it was a 5xx) to this process's tally; starts the
    flushing thread with the first one (again in a forked child)."""
    minute = int((time.time() if at is None else at) // 60)
    with _tally_lock:
        row = _tally.get(minute)
        if row is None:
            row = _tally[minute] = [0, 0]
        row[0] += 1
        if status >= 500:
            row[1] += 1
    if not _flusher_started:
        _flusher_start()


def minute_counts_flush() -> bool:
    """Add this process's tally to Redis in one round trip and start a new one. False
    when Redis could not be reached: that tally is dropped (logged), never retried
    against a request."""
    with _tally_lock:
        if not _tally:
            return True
        tally = dict(_tally)
        _tally.clear()
    counts = {minute: {"n": n, "5xx": errors} for minute, (n, errors) in tally.items()}
    try:
        window_counts_add(MINUTE_KEY, counts, keep_seconds=KEEP_SECONDS)
    except RedisError as exc:
        lost = sum(n for n, _ in tally.values())
        logger.warning(
            "%d requests not counted for the alarms (Redis): %s", lost, type(exc).__name__
        )
        return False
    return True


#: Set to stop the flushing thread (tests); the thread waits on it between flushes rather
#: than calling ``time.sleep``, which a test may patch (a patched no-op sleep made the
#: loop spin, flushing and appending to the patch's record thousands of times a second).
_stop = threading.Event()


def _flush_loop() -> None:
    while not _stop.wait(FLUSH_SECONDS):
        try:
            minute_counts_flush()
        except Exception:  # the thread must outlive any one failure (logged)
            logger.exception("Request counts flush failed")


def _flusher_start() -> None:
    global _flusher_started
    with _tally_lock:
        if _flusher_started:
            return
        _flusher_started = True
    threading.Thread(target=_flush_loop, name="request-counts-flush", daemon=True).start()


def _after_fork() -> None:
    """A forked child has no flushing thread and must not add its parent's tally again."""
    global _flusher_started
    _flusher_started = False
    _tally.clear()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(minute_counts_flush)


def http_window_metrics() -> Iterator[Metric]:
    """The ``http_window`` metric source: requests and 5xx answers of every web process
    over the window (the current minute included), from Redis."""
    from support.metrics import gauge, metrics_window_seconds  # models: not at import time

    seconds = min(float(metrics_window_seconds()), float(MAX_WINDOW_SECONDS))
    now = int(time.time() // 60)
    minutes = max(1, math.ceil(seconds / 60))
    totals = window_counts_sum(MINUTE_KEY, range(now - minutes + 1, now + 1))
    requests = gauge(
        "http_window_requests",
        "HTTP requests the web processes answered in the window (every process; counted "
        "per minute in Redis, up to a few seconds late).",
    )
    requests.add_metric([], totals.get("n", 0.0))
    yield requests
    errors = gauge(
        "http_window_errors",
        "HTTP requests the web processes answered with a 5xx status in the window.",
    )
    errors.add_metric([], totals.get("5xx", 0.0))
    yield errors


def _early_routes() -> dict[str, str]:
    """Paths answered before URL resolution (support/middleware.py), by their own path."""
    from support.health import PROBES
    from support.middleware import METRICS_PATH

    return {path: path.lstrip("/") for path in [*PROBES, METRICS_PATH]}


_early: dict[str, str] = {}


def request_route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return str(match.route or match.view_name or UNMATCHED)
    if not _early:
        _early.update(_early_routes())
    path = request.path_info
    early = _early.get(path)
    if early is not None:
        return early
    if path.startswith(settings.STATIC_URL):
        return STATIC
    return UNMATCHED


class RequestMetricsMiddleware:
    """First in ``MIDDLEWARE``: times everything the Django stack answers, probes included.

    Webhook deliveries taken by the fast path (channels_app/api/fastpath.py) never reach
    Django; the fast path records them itself under the same route."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        request_record(
            request_route(request),
            request.method or "",
            response.status_code,
            time.perf_counter() - started,
        )
        return response


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class WebsocketMetrics:
    """ASGI wrapper for the websocket protocol: counts connections and the open ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        WEBSOCKETS.inc()
        WEBSOCKETS_OPEN.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            WEBSOCKETS_OPEN.dec()


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode when this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def dead_process_cleanup(path: str) -> list[int]:
    """Drop the live gauges of web workers that have exited (uvicorn replaces a worker
    that dies; its open connections are gone with it). Counters and histograms of dead
    workers are kept: they are part of the totals."""
    dead = []
    for file in Path(path).glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            mark_process_dead(pid, path)
            dead.append(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def http_metrics() -> Iterator[Metric]:
    """The ``http`` metric source: every web process's counters in multiprocess mode, this
    process's otherwise."""
    path = multiprocess_dir()
    if path is None:
        yield from _registry.collect()
        return
    dead_process_cleanup(path)
    yield from MultiProcessCollector(None, path=path).collect()  # type: ignore[arg-type]
