"""Knowledge-base search latency and zero-result rate (``GET /metrics``; registered in
``KnowledgeConfig.ready``).

Searches are not stored anywhere, and they run in web processes (the search API, the
ticket page's suggestions) and in workers (reply drafts), so each one is counted in Redis:
one pipelined round trip per search (a few ``HINCRBY`` on a hash per clock hour, which
expires after the window: ``support.window_counts``), next to a search that embeds the
query and asks PostgreSQL.
A scrape sums the hours of the window (``METRICS_WINDOW_SECONDS`` rounded up to whole
hours, the current one included), like the other windowed gauges. Redis unavailable: the
search goes on uncounted (logged), and the scrape reports the source down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client.core import HistogramMetricFamily, Metric

from knowledge.models import ObjectEvent
from support.metrics import PREFIX, gauge
from support.window_counts import window_counts_add, window_counts_sum

logger = logging.getLogger(__name__)

BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
KEY = "metrics:kb-search:{bucket}"  # the clock hour
MAX_HOURS = 24 * 31


def _hours() -> int:
    return max(1, min(MAX_HOURS, math.ceil(int(settings.METRICS_WINDOW_SECONDS) / 3600)))


def _current_hour() -> int:
    return int(time.time() // 3600)


def kb_search_record(*, seconds: float, results: int) -> None:
    """Count one search: its duration and whether it found nothing."""
    bucket = next((i for i, bound in enumerate(BUCKETS_SECONDS) if seconds <= bound), "inf")
    fields: dict[str, float] = {"n": 1, f"b{bucket}": 1, "sum": float(seconds)}
    if results == 0:
        fields["zero"] = 1
    try:
        window_counts_add(KEY, {_current_hour(): fields}, keep_seconds=(_hours() + 1) * 3600)
    except redis.RedisError as exc:
        logger.warning("KB search not counted (Redis): %s", type(exc).__name__)


def kb_search_metrics() -> Iterator[Metric]:
    now_hour = _current_hour()
    totals = window_counts_sum(KEY, range(now_hour - _hours() + 1, now_hour + 1))
    n = totals.get("n", 0.0)
    zero = totals.get("zero", 0.0)

    points = []
    cumulative = 0.0
    for i, bound in enumerate(BUCKETS_SECONDS):
        cumulative += totals.get(f"b{i}", 0.0)
        points.append((repr(float(bound)), cumulative))
    points.append(("+Inf", n))
    histogram = HistogramMetricFamily(
        f"{PREFIX}_kb_search_seconds",
        "Knowledge-base search time in the window (search API, suggestions, drafts).",
    )
    histogram.add_metric([], points, sum_value=totals.get("sum", 0.0))
    yield histogram

    searches = gauge("kb_searches", "Knowledge-base searches in the window.")
    searches.add_metric([], n)
    yield searches
    empty = gauge("kb_search_zero_results", "Searches in the window that found nothing.")
    empty.add_metric([], zero)
    yield empty
    rate = gauge(
        "kb_search_zero_result_rate", "Share of the window's searches that found nothing (0-1)."
    )
    if n:  # no searches: no rate (a 0 would read as "every search found something")
        rate.add_metric([], zero / n)
    yield rate


def kb_object_event_metrics() -> Iterator[Metric]:
    """S3 object events the sweep gave up on, now (a level, not windowed: each stays until
    a supervisor re-drives it from the admin). A source of its own, so a Redis outage that
    takes the search counts down still reports it (it asks PostgreSQL only)."""
    failed = gauge(
        "kb_object_events_failed",
        "Knowledge-base S3 object events whose attempts are spent and wait for a re-drive "
        "(now, whenever they came).",
    )
    # the partial index kb_objectevent_pending (unprocessed events only)
    failed.add_metric(
        [],
        ObjectEvent.objects.filter(processed_at__isnull=True, failed_at__isnull=False).count(),
    )
    yield failed


def kb_source_metrics() -> Iterator[Metric]:
    """Sources whose last sync or ingest failed, now (a level: each stays until a later
    run of the source succeeds; admin "Knowledge sources", action "Sync again"). PostgreSQL
    only, like the events'."""
    from knowledge.selectors import knowledge_sources_failing  # it imports this module

    failing = gauge(
        "kb_sources_failing",
        "Knowledge sources whose last finished sync or ingest failed (now), by source kind.",
        ["kind"],
    )
    for kind, count in sorted(knowledge_sources_failing().items()):
        failing.add_metric([kind], count)
    yield failing
