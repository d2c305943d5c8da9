"""A metric source the test controls (``feed.set(...)``), and helpers to evaluate at
chosen times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from alerts.adapters import http as alerts_http
from support import metrics as support_metrics


@dataclass
class Feed:
    """Families keyed by name: a number (a gauge with no labels), a list of
    ``(labels dict, value)`` (a labelled gauge), or ``("histogram", count, sum)``."""

    values: dict[str, Any] = field(default_factory=dict)
    windows: list[float] = field(default_factory=list)

    def set(self, **values: Any) -> None:
        self.values = dict(values)

    def __call__(self) -> Iterator[Metric]:
        start = support_metrics.window_start()
        from django.utils import timezone

        self.windows.append(round((timezone.now() - start).total_seconds()))
        for name, value in self.values.items():
            if isinstance(value, tuple) and value[0] == "histogram":
                _, count, total = value
                family = HistogramMetricFamily(name, "test")
                family.add_metric([], [("+Inf", float(count))], sum_value=float(total))
                yield family
            elif isinstance(value, list):
                labels = sorted({k for labels, _ in value for k in labels})
                gauge = GaugeMetricFamily(name, "test", labels=labels)
                for sample_labels, sample in value:
                    gauge.add_metric([sample_labels.get(k, "") for k in labels], float(sample))
                yield gauge
            else:
                gauge = GaugeMetricFamily(name, "test")
                gauge.add_metric([], float(value))
                yield gauge


@pytest.fixture
def feed() -> Iterator[Feed]:
    source = Feed()
    support_metrics.metric_source_register("zz_test_feed", source)
    yield source
    support_metrics._sources.pop("zz_test_feed", None)


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Target host names resolve to a public address (no DNS in tests)."""
    monkeypatch.setattr(alerts_http, "resolver", lambda host, port: ["93.184.215.14"])


@pytest.fixture
def seed_rules(db: Any) -> None:
    """The seed rules as the migrations leave them. A transactional test elsewhere flushes
    the tables (and with them the migrations' rows) on a reused test database, so the
    migrations' own functions put them back (get_or_create, and updates of the old defaults
    only: no-ops when the rows are there)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0001_alert_rules_alerts_targets")
    migration.seed_rules_create(apps, None)
    importlib.import_module(
        "alerts.migrations.0002_call_bedrock_failures_metric"
    ).rule_metric_update(apps, None)
    importlib.import_module(
        "alerts.migrations.0003_http_5xx_rate_from_redis_counts"
    ).rule_source_update(apps, None)
    importlib.import_module(
        "alerts.migrations.0004_call_dead_letters_description"
    ).description_update(apps, None)
    importlib.import_module(
        "alerts.migrations.0005_error_rate_counts_failed_routing"
    ).rule_source_update(apps, None)
