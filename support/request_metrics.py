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

Labels stay bounded: ``route`` is the URL pattern the resolver matched
(``api/tickets/<int:pk>``), never the path; a path that matched nothing is ``unmatched``,
static files ``static``, and the paths answered before URL resolution (health probes,
``/metrics``) their own path. ``method`` is one of the HTTP methods or ``other``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

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
    """Count one answered request (a dict lookup and three in-memory writes)."""
    if method not in METHODS:
        method = "other"
    key = (route, method, status)
    pair = _children.get(key)
    if pair is None:
        pair = (REQUESTS.labels(route, method, str(status)), DURATION.labels(route, method))
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


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
