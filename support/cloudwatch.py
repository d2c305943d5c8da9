"""Optional CloudWatch publishing of the ``/metrics`` values (``CLOUDWATCH_METRICS_ENABLED``).

Off by default. When on, beat runs ``cloudwatch_metrics_publish_task`` every
``CLOUDWATCH_METRICS_INTERVAL_SECONDS`` (60): it computes the same sources a scrape does
(support/metrics.py, the database and Redis at this moment, so one publisher covers every
process) and sends them with ``PutMetricData`` through ``support.aws.aws_client`` to
``CLOUDWATCH_METRICS_NAMESPACE``.

Windowed values count over the publishing interval, not over ``METRICS_WINDOW_SECONDS`` (a
scrape's 24 h): each datapoint is what happened in the last interval, so a CloudWatch
``Sum`` over 5 minutes is the count in those 5 minutes (seed 004's "> 10 failed syncs in 5
minutes"), and averages and rates are the interval's. Levels (queue lengths, ages, dead
letters waiting) are not windowed and are sent as they are.

- every gauge sample as a metric named like the Prometheus family without the ``support_``
  prefix, its labels as dimensions (``routing_tickets_processed``, ``provider=bedrock``);
- every windowed histogram as ``<name>_count`` and ``<name>_mean`` (no mean when the count is 0);
- seed 004's metrics also under the seed's own names, without dimensions
  (``TicketsProcessed``, ``ProcessingTime`` in seconds, ``ConfidenceScore``,
  ``ManualReviewRate``, ``RoutingAccuracy``, ``TicketingSystemSyncFailures``,
  ``BedrockAPIErrors``, ``CostPerTicket``), for alarms written against the seed;
  ``ManualReviewRate`` and ``RoutingAccuracy`` as percentages (0-100, ``Unit: Percent``)
  as the seed defines them, while their gauges (and the dimensioned copies) stay 0-1.
  An average or a rate with no sample in the interval is not sent (counts are: 0).

The per-process request counters (``support_http_*``, ``support_websocket_*``) are counters
of the web process that answers, not of the deployment: they are left to Prometheus (the
load balancer's own CloudWatch metrics cover requests and 5xx). A failed publish is logged
and dropped: the next interval sends fresh values, so nothing is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from prometheus_client.core import Metric

from support.aws import aws_client, describe_aws_error
from support.metrics import PREFIX, ScrapeCollector, metrics_window

logger = logging.getLogger(__name__)

BATCH = 500  # PutMetricData takes up to 1,000 values (1 MB) per request
PER_PROCESS = (f"{PREFIX}_http_", f"{PREFIX}_websocket_", f"{PREFIX}_provider_programming")

#: Seed 004's names: (family, labels a sample must have). Gauge samples are summed (e.g.
#: tickets over providers); a histogram gives its average.
SEED_004: dict[str, tuple[str, dict[str, str]]] = {
    "TicketsProcessed": (f"{PREFIX}_routing_tickets_processed", {}),
    "ProcessingTime": (f"{PREFIX}_routing_processing_seconds", {}),
    "ConfidenceScore": (f"{PREFIX}_routing_confidence_average", {}),
    "ManualReviewRate": (f"{PREFIX}_routing_manual_review_rate", {}),
    "RoutingAccuracy": (f"{PREFIX}_routing_accuracy", {"dimension": "overall"}),
    "TicketingSystemSyncFailures": (f"{PREFIX}_routing_sync_failures", {}),
    "BedrockAPIErrors": (f"{PREFIX}_routing_provider_errors", {"provider": "bedrock"}),
    "CostPerTicket": (f"{PREFIX}_routing_cost_per_ticket_usd", {}),
}
#: Seed 004 names whose value the seed gives as a percentage ("Percentage requiring manual
#: review", "Percentage of correct routings"; its alarm says "> 30%"): their gauges are
#: fractions (0-1, as on /metrics and for the alert rules), sent here x 100, Unit Percent.
SEED_004_PERCENT = frozenset({"ManualReviewRate", "RoutingAccuracy"})
#: Seed 004 names that count (0 is a value: nothing happened). The others are averages or
#: rates: with no sample in the interval they are not sent (a 0 would read as "confidence
#: 0" or "accuracy 0%" in every quiet minute and trip an alarm written against the seed).
SEED_004_COUNTS = frozenset({"TicketsProcessed", "TicketingSystemSyncFailures", "BedrockAPIErrors"})


def _short(name: str) -> str:
    return name.removeprefix(f"{PREFIX}_")


def _datum(
    name: str, value: float, labels: dict[str, str], at: datetime, unit: str = ""
) -> dict[str, Any]:
    datum = {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v or "-"} for k, v in sorted(labels.items())][:30],
        "Value": float(value),
        "Timestamp": at,
    }
    if unit:
        datum["Unit"] = unit
    return datum


def metric_data(families: Iterable[Metric], *, at: datetime) -> Iterator[dict[str, Any]]:
    """``PutMetricData`` entries for the families of one scrape."""
    seed: dict[str, list[float]] = {name: [] for name in SEED_004}
    for family in families:
        if family.name.startswith(PER_PROCESS):
            continue
        if family.type == "gauge":
            for sample in family.samples:
                yield _datum(_short(family.name), sample.value, dict(sample.labels), at)
                for seed_name, (source, match) in SEED_004.items():
                    if source == family.name and match.items() <= sample.labels.items():
                        seed[seed_name].append(sample.value)
        elif family.type == "histogram":
            count = sum(s.value for s in family.samples if s.name.endswith("_count"))
            total = sum(s.value for s in family.samples if s.name.endswith("_sum"))
            yield _datum(f"{_short(family.name)}_count", count, {}, at)
            if not count:
                continue  # no mean of nothing
            average = total / count
            yield _datum(f"{_short(family.name)}_mean", average, {}, at)
            for seed_name, (source, _) in SEED_004.items():
                if source == family.name:
                    seed[seed_name].append(average)
    for seed_name, values in seed.items():
        if not values and seed_name not in SEED_004_COUNTS:
            continue
        if seed_name in SEED_004_PERCENT:
            yield _datum(seed_name, sum(values) * 100, {}, at, unit="Percent")
        else:
            yield _datum(seed_name, sum(values), {}, at)


def cloudwatch_metrics_publish() -> int:
    """Compute every metric source now, over the last publishing interval, and send it;
    the number of values sent."""
    if not settings.CLOUDWATCH_METRICS_ENABLED:
        return 0
    with metrics_window(settings.CLOUDWATCH_METRICS_INTERVAL_SECONDS):
        families = list(ScrapeCollector().collect())
    data = list(metric_data(families, at=datetime.now(UTC)))
    client = aws_client("cloudwatch", region=settings.CLOUDWATCH_METRICS_REGION or None)
    sent = 0
    for start in range(0, len(data), BATCH):
        batch = data[start : start + BATCH]
        try:
            client.put_metric_data(
                Namespace=settings.CLOUDWATCH_METRICS_NAMESPACE, MetricData=batch
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("CloudWatch metrics not published: %s", describe_aws_error(exc))
            return sent
        sent += len(batch)
    return sent
