"""Prometheus metrics at ``GET /metrics``, computed from PostgreSQL and Redis at scrape time.

Why at scrape time: the web server and the Celery workers are several processes (and, deployed,
several tasks); counters kept in memory would each see a slice. The database already records
every inbound event, decision, call and delivery, so each scrape asks it, with bounded queries
on indexed columns over a time window (``METRICS_WINDOW_SECONDS``, default 24 h). Values over
a window are therefore gauges ("in the last 24 h"), not monotonic counters.

Feature apps register their own sources (``metric_source_register`` in their
``AppConfig.ready``), the way they register panels, so this shared module names no feature app.
A source that fails (database or Redis down) is reported as ``support_metrics_source_up{source}
0`` and the others still answer.

Access: a bearer token (``METRICS_TOKEN``), compared in constant time. No token configured
means the endpoint does not exist (404); a wrong or missing ``Authorization`` header is 401.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import models
from django.db.utils import Error as DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from support.beat import beat_last_run_age
from support.fallback import programming_error_counts
from support.models import OutboxEvent
from support.redis_client import get_redis
from support.selectors import outbox_failed_count

logger = logging.getLogger(__name__)

PREFIX = "support"

MetricSource = Callable[[], Iterable[Metric]]
_sources: dict[str, MetricSource] = {}


def metric_source_register(name: str, source: MetricSource) -> None:
    """Add (or replace) a named source; it is called on every scrape."""
    _sources[name] = source


def metric_sources() -> dict[str, MetricSource]:
    return dict(_sources)


# --- the window, and collecting in-process (alarm rules) -----------------------------------

_window_seconds: ContextVar[float | None] = ContextVar("metrics_window_seconds", default=None)


@contextmanager
def metrics_window(seconds: float) -> Iterator[None]:
    """Within the block, windowed sources count over the last ``seconds`` instead of
    ``METRICS_WINDOW_SECONDS`` (an alarm rule's "for 5 minutes")."""
    token = _window_seconds.set(float(seconds))
    try:
        yield
    finally:
        _window_seconds.reset(token)


def metrics_collect(
    *, window_seconds: float | None = None, failed: list[str] | None = None
) -> list[Metric]:
    """Every registered source's metric families, computed now in this process, over
    ``window_seconds`` (default ``METRICS_WINDOW_SECONDS``). A source that fails (database or
    Redis down) is logged and left out, its name added to ``failed`` when given; the others
    still answer."""
    families: list[Metric] = []
    seconds = settings.METRICS_WINDOW_SECONDS if window_seconds is None else window_seconds
    with metrics_window(seconds):
        for name, source in sorted(metric_sources().items()):
            try:
                families.extend(source())
            except (DatabaseError, redis.RedisError) as exc:
                logger.warning("Metrics source %s failed: %s", name, type(exc).__name__)
                if failed is not None:
                    failed.append(name)
    return families


# --- helpers shared by the sources ---------------------------------------------------------


def metrics_window_seconds() -> float:
    """The length of the window that windowed metrics count over (``metrics_window`` or
    ``METRICS_WINDOW_SECONDS``)."""
    seconds = _window_seconds.get()
    if seconds is None:
        seconds = float(settings.METRICS_WINDOW_SECONDS)
    return seconds


def window_start() -> datetime:
    """The start of the window that windowed metrics count over."""
    return timezone.now() - timedelta(seconds=metrics_window_seconds())


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def age_seconds(oldest: datetime | None) -> float:
    """Seconds since ``oldest``; 0 when there is nothing waiting."""
    if oldest is None:
        return 0.0
    return max(0.0, (timezone.now() - oldest).total_seconds())


def histogram_from_queryset(
    name: str,
    documentation: str,
    queryset: models.QuerySet[models.Model],
    *,
    field: str,
    buckets: Sequence[float],
    scale: float = 1.0,
) -> HistogramMetricFamily:
    """A Prometheus histogram of ``field`` over ``queryset`` in one aggregate query.

    ``buckets`` are upper bounds in the exported unit; ``scale`` converts the stored value to
    that unit (e.g. 1000 for milliseconds stored, seconds exported)."""
    aggregates: dict[str, models.Aggregate] = {
        f"le_{i}": models.Count("pk", filter=models.Q(**{f"{field}__lte": bound * scale}))
        for i, bound in enumerate(buckets)
    }
    row = queryset.aggregate(total=models.Count("pk"), total_sum=models.Sum(field), **aggregates)
    total = int(row["total"] or 0)
    points = [(_le(bound), float(row[f"le_{i}"] or 0)) for i, bound in enumerate(buckets)]
    points.append(("+Inf", float(total)))
    histogram = HistogramMetricFamily(f"{PREFIX}_{name}", documentation)
    histogram.add_metric([], points, sum_value=float(row["total_sum"] or 0) / scale)
    return histogram


def _le(bound: float) -> str:
    return repr(float(bound))


# --- the sources this package owns ---------------------------------------------------------


def outbox_metrics() -> Iterator[Metric]:
    oldest = (
        OutboxEvent.objects.filter(delivered_at__isnull=True, failed_at__isnull=True)
        .order_by("id")  # the partial index outbox_pending_idx
        .values_list("created_at", flat=True)
        .first()
    )
    lag = gauge("outbox_lag_seconds", "Age of the oldest outbox event not yet relayed.")
    lag.add_metric([], age_seconds(oldest))
    yield lag
    # Left out of the lag above (the relay no longer tries them): a level of their own.
    failed = gauge(
        "outbox_failed",
        "Outbox events the relay gave up on (its attempts spent), waiting for a re-drive "
        "(all time).",
    )
    failed.add_metric([], outbox_failed_count())
    yield failed


def delivery_metrics() -> Iterator[Metric]:
    from support.delivery.models import Delivery
    from support.delivery.selectors import (
        circuits_paused_count,
        dead_letters_by_kind,
        possible_duplicates_count,
    )
    from support.models import DeliveryStatus

    by_status = gauge(
        "deliveries",
        "Outbound deliveries created in the window, by target kind and status.",
        ["kind", "status"],
    )
    rows = (
        Delivery.objects.filter(created_at__gte=window_start())
        .values("target_kind", "status")
        .annotate(n=models.Count("pk"))
        .order_by()
    )
    for row in rows:
        by_status.add_metric([row["target_kind"], row["status"]], row["n"])
    yield by_status
    dead = gauge(
        "deliveries_dead_letters",
        "Dead-letter deliveries waiting for a re-drive (all time), by target kind.",
        ["kind"],
    )
    for kind, n in sorted(dead_letters_by_kind().items()):
        dead.add_metric([kind], n)
    yield dead
    # What /health reports under "deliveries", from the same selectors.
    circuits = gauge(
        "delivery_circuits_open",
        "Targets whose circuit breaker holds their deliveries back now (open, or half-open "
        "with one probe out).",
    )
    circuits.add_metric([], circuits_paused_count())
    yield circuits
    duplicates = gauge(
        "deliveries_possible_duplicates",
        "Deliveries that may have reached their recipient twice (an attempt lost mid-call, "
        "sent again to a target that cannot deduplicate), all time.",
    )
    duplicates.add_metric([], possible_duplicates_count())
    yield duplicates
    oldest_open = (
        Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING])
        .order_by("next_attempt_at")  # partial index delivery_due_idx
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    overdue = gauge(
        "deliveries_overdue_seconds",
        "How long the most overdue open delivery has waited past its next attempt time.",
    )
    overdue.add_metric([], age_seconds(oldest_open))
    yield overdue


def queue_metrics() -> Iterator[Metric]:
    depth = gauge(
        "celery_queue_length", "Tasks waiting in each Celery queue (Redis LLEN).", ["queue"]
    )
    client = get_redis()
    for queue in (settings.CELERY_TASK_DEFAULT_QUEUE, settings.REALTIME_QUEUE):
        depth.add_metric([queue], float(client.llen(queue)))  # type: ignore[arg-type]
    yield depth


def beat_metrics() -> Iterator[Metric]:
    """Redis: when beat last published a scheduled task (``support/beat.py``). No sample
    while there is no mark (beat not seen since Redis was emptied): Prometheus' "no data",
    which ``absent()`` finds, rather than a made-up age."""
    age = beat_last_run_age()
    family = gauge(
        "beat_last_run_age_seconds",
        "Seconds since Celery beat last sent a scheduled task (no sample: beat not seen "
        "since Redis was emptied).",
    )
    if age is not None:
        family.add_metric([], age)
    yield family


def process_metrics() -> Iterator[Metric]:
    errors = gauge(
        "provider_programming_errors",
        "Programming errors a provider fallback met in the web process that answered this "
        "scrape, since it started (per process; the logs have the tracebacks).",
        ["component"],
    )
    for component, count in sorted(programming_error_counts().items()):
        errors.add_metric([component], count)
    yield errors


def register_builtin_sources() -> None:
    metric_source_register("outbox", outbox_metrics)
    metric_source_register("deliveries", delivery_metrics)
    metric_source_register("celery_queues", queue_metrics)
    metric_source_register("beat", beat_metrics)
    metric_source_register("process", process_metrics)


# --- collection and the view ---------------------------------------------------------------


class ScrapeCollector(Collector):
    """Calls every registered source; a failing one is reported, not fatal."""

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = gauge("metrics_source_up", "1 when the source answered this scrape.", ["source"])
        for name, source in sorted(metric_sources().items()):
            try:
                families = list(source())
            except (DatabaseError, redis.RedisError) as exc:
                logger.warning("Metrics source %s failed: %s", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up
        duration = gauge("metrics_scrape_seconds", "Time taken to compute this scrape.")
        duration.add_metric([], time.perf_counter() - started)
        yield duration


def metrics_render() -> bytes:
    """The Prometheus text exposition of every registered source, computed now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector())
    return generate_latest(registry)


def _authorized(request: HttpRequest, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off: METRICS_TOKEN is not set.")
    if not _authorized(request, token):
        response = HttpResponse("A valid bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
