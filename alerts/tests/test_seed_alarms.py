"""Every alarm of seeds 003 and 004 exists (created by the migration) with the seed's
threshold, window and tier, fires when fed the metric over its threshold, and resolves when
the metric is back under it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertState
from alerts.services import alert_rules_evaluate

ERR = "support_routing_provider_errors"
DONE = "support_routing_tickets_processed"
LATENCY = "support_routing_processing_seconds"
CONFIDENCE = "support_routing_confidence"


OUTCOMES = "support_routing_outcomes"


def _bedrock(errors: float) -> list[tuple[dict[str, str], float]]:
    return [({"provider": "bedrock"}, errors), ({"provider": "openai"}, 0.0)]


def _outcomes(fell_back: float, failed: float, total: float = 100) -> dict[str, Any]:
    """The error-rate alarms' source (migration 0005): tickets by routing outcome."""
    decided = total - fell_back - failed
    return {
        OUTCOMES: [
            ({"outcome": "decided"}, decided),
            ({"outcome": "fell_back"}, fell_back),
            ({"outcome": "failed"}, failed),
        ]
    }


# name, tier, comparison, threshold, window (s), metric fed over the threshold, under it
SEED_ALARMS: list[tuple[str, str, str, float, int, dict[str, Any], dict[str, Any]]] = [
    # seed 004, CloudWatch alarms
    ("HighErrorRate", "warning", "gt", 0.05, 300,
     _outcomes(5, 1), _outcomes(4, 1)),
    ("LowConfidence", "warning", "lt", 0.6, 900,
     {CONFIDENCE: ("histogram", 10, 5.9)}, {CONFIDENCE: ("histogram", 10, 6.0)}),
    ("HighLatency", "warning", "gt", 5.0, 600,
     {LATENCY: ("histogram", 4, 20.4)}, {LATENCY: ("histogram", 4, 20.0)}),
    ("SyncFailures", "warning", "gt", 10.0, 300,
     {"support_routing_sync_failures": 11}, {"support_routing_sync_failures": 10}),
    ("BedrockThrottling", "warning", "gt", 0.0, 300,
     {ERR: _bedrock(1)}, {ERR: [({"provider": "openai"}, 3.0)]}),
    # seed 004, critical alerts (PagerDuty)
    ("CriticalErrorRate", "critical", "gt", 0.10, 300,
     _outcomes(10, 1), _outcomes(9, 1)),
    ("CriticalProcessingTime", "critical", "gt", 10.0, 300,
     {LATENCY: ("histogram", 2, 20.2)}, {LATENCY: ("histogram", 2, 20.0)}),
    ("CriticalBedrockFailures", "critical", "gt", 0.5, 120,
     {ERR: _bedrock(51), DONE: 100}, {ERR: _bedrock(50), DONE: 100}),
    ("CriticalSyncFailures", "critical", "gt", 20.0, 300,
     {"support_routing_sync_failures": 21}, {"support_routing_sync_failures": 20}),
    # seed 004, warning alerts (e-mail)
    ("WarningErrorRate", "warning", "gt", 0.05, 600,
     _outcomes(5, 1), _outcomes(4, 1)),
    ("WarningLowConfidence", "warning", "lt", 0.7, 1800,
     {CONFIDENCE: ("histogram", 10, 6.9)}, {CONFIDENCE: ("histogram", 10, 7.0)}),
    ("WarningManualReviewRate", "warning", "gt", 0.3, 3600,
     {"support_routing_manual_review_rate": 0.31}, {"support_routing_manual_review_rate": 0.3}),
    ("DailyCost", "warning", "gt", 350.0, 86400,
     {"support_routing_cost_usd": 350.01}, {"support_routing_cost_usd": 349.99}),
    # seed 003
    ("CallPipelineErrorRate", "warning", "gt", 0.05, 300,
     {"support_call_events": [({"status": "failed"}, 6), ({"status": "processed"}, 94)]},
     {"support_call_events": [({"status": "failed"}, 5), ({"status": "processed"}, 95)]}),
    ("CallDeadLetters", "warning", "gt", 0.0, 86400,
     {"support_call_events_failed": 1}, {"support_call_events_failed": 0}),
    ("CallBedrockFailures", "warning", "gt", 0.0, 300,
     {"support_call_bedrock_failures": 1}, {"support_call_bedrock_failures": 0}),
    # the web processes' requests per minute, from Redis (migration 0003)
    ("Http5xxRate", "critical", "gt", 0.01, 300,
     {"support_http_window_errors": 3, "support_http_window_requests": 200},
     {"support_http_window_errors": 2, "support_http_window_requests": 200}),
]  # fmt: skip


def _only(name: str) -> AlertRule:
    """Evaluate one seed rule alone (the others share its metrics)."""
    AlertRule.objects.exclude(name=name).update(enabled=False)
    return AlertRule.objects.get(name=name)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
@pytest.mark.parametrize(
    ("name", "tier", "comparison", "threshold", "window", "over", "under"),
    SEED_ALARMS,
    ids=[row[0] for row in SEED_ALARMS],
)
def test_seed_alarm_fires_over_its_threshold_and_resolves_under_it(
    feed, name, tier, comparison, threshold, window, over, under
):
    rule = _only(name)
    assert (rule.severity, rule.comparison, rule.threshold, rule.window_seconds) == (
        tier,
        comparison,
        threshold,
        window,
    )
    assert rule.enabled is True
    now = timezone.now()

    feed.set(**under)
    assert alert_rules_evaluate(now=now).fired == []
    assert feed.windows[-1] == window  # the sources counted over the rule's window

    feed.set(**over)
    report = alert_rules_evaluate(now=now + timedelta(minutes=1))
    assert report.fired == [rule.pk]
    alert = Alert.objects.get()
    assert (alert.rule, alert.state, alert.severity, alert.title) == (
        rule,
        AlertState.FIRING,
        tier,
        name,
    )
    assert [e.action for e in alert.history.all()] == ["fired"]

    feed.set(**under)
    report = alert_rules_evaluate(now=now + timedelta(minutes=2))
    assert report.resolved == [rule.pk]
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert alert.resolved_by is None
    assert [e.action for e in alert.history.all()] == ["fired", "resolved"]


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_seed_http_5xx_rate_reads_the_requests_per_minute_every_process_can_read(feed):
    """Review r5: the rule watched ``support_http_requests_total``, counters that only the
    web processes hold, while a Celery worker evaluates it. It now divides the window
    gauges of the ``http_window`` source (requests per minute in Redis), and the web
    processes' counters seen by the evaluator change nothing."""
    rule = _only("Http5xxRate")
    assert (rule.metric, rule.denominator, rule.aggregation) == (
        "support_http_window_errors",
        "support_http_window_requests",
        "window",
    )
    now = timezone.now()
    total = "support_http_requests_total"
    feed.set(**{
        total: [({"route": "inbox", "status": "503"}, 50)],
        "support_http_window_errors": 0,
        "support_http_window_requests": 100,
    })  # fmt: skip
    assert alert_rules_evaluate(now=now).fired == []
    feed.set(**{"support_http_window_errors": 3, "support_http_window_requests": 200})
    assert alert_rules_evaluate(now=now + timedelta(minutes=1)).fired == [rule.pk]
    assert Alert.objects.get().value == pytest.approx(0.015)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_quiet_metrics_fire_no_seed_alarm(feed):
    """An installation with no traffic (no decisions, no calls) raises nothing: a ratio with
    a zero denominator is no data, not 0% confidence."""
    assert AlertRule.objects.filter(enabled=True).count() == len(SEED_ALARMS)
    report = alert_rules_evaluate(now=timezone.now())
    assert report.evaluated == len(SEED_ALARMS)
    assert report.fired == []
    assert not Alert.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("edited", [False, True], ids=["default", "edited"])
def test_call_bedrock_failures_migration_moves_only_the_old_default(edited):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0002_call_bedrock_failures_metric")
    mine = 'support_call_analytics{bedrock_status="Failed"}'
    AlertRule.objects.filter(name="CallBedrockFailures").delete()
    rule = AlertRule.objects.create(
        name="CallBedrockFailures",
        metric=mine if edited else migration.OLD_METRIC,
        description="Mine." if edited else migration.OLD_DESCRIPTION,
        threshold=0.0,
        severity="warning",
    )
    migration.rule_metric_update(apps, None)
    rule.refresh_from_db()
    if edited:
        assert (rule.metric, rule.description) == (mine, "Mine.")
    else:
        assert rule.metric == "support_call_bedrock_failures"
        assert rule.description == migration.NEW_DESCRIPTION
    migration.rule_metric_restore(apps, None)
    rule.refresh_from_db()
    assert rule.metric == (mine if edited else migration.OLD_METRIC)


@pytest.mark.django_db
@pytest.mark.parametrize("edited", [False, True], ids=["default", "edited"])
def test_http_5xx_rate_migration_moves_only_the_old_default(edited):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0003_http_5xx_rate_from_redis_counts")
    metric, denominator, aggregation = migration.OLD
    AlertRule.objects.filter(name="Http5xxRate").delete()
    rule = AlertRule.objects.create(
        name="Http5xxRate",
        metric='support_http_requests_total{status="500"}' if edited else metric,
        denominator=denominator,
        aggregation=aggregation,
        threshold=0.01,
        severity="critical",
    )
    before = (rule.metric, rule.denominator, rule.aggregation)
    migration.rule_source_update(apps, None)
    rule.refresh_from_db()
    moved = (rule.metric, rule.denominator, rule.aggregation)
    assert moved == (before if edited else migration.NEW)
    migration.rule_source_restore(apps, None)
    rule.refresh_from_db()
    assert (rule.metric, rule.denominator, rule.aggregation) == before


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
@pytest.mark.parametrize("edited", [False, True], ids=["default", "edited"])
def test_call_dead_letters_migration_rewords_only_the_old_default(edited):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0004_call_dead_letters_description")
    # the migrated database already has the new wording
    assert AlertRule.objects.get(name="CallDeadLetters").description == migration.NEW
    mine = "Mine."
    AlertRule.objects.filter(name="CallDeadLetters").update(
        description=mine if edited else migration.OLD
    )
    migration.description_update(apps, None)
    rule = AlertRule.objects.get(name="CallDeadLetters")
    assert rule.description == (mine if edited else migration.NEW)
    assert "24 hours" not in rule.description
    migration.description_restore(apps, None)
    rule.refresh_from_db()
    assert rule.description == (mine if edited else migration.OLD)


@pytest.mark.django_db
@pytest.mark.parametrize("edited", ["", "metric", "denominator"])
def test_error_rate_migration_moves_only_the_old_default_and_again_changes_nothing(edited):
    """A rule a supervisor pointed elsewhere keeps its source and its description both
    ways (before, HighErrorRate's shipped text was reworded to say it counts failed
    routing whatever it counted); both directions run twice change nothing more."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("alerts.migrations.0005_error_rate_counts_failed_routing")
    AlertRule.objects.filter(name__in=migration.RULES).delete()
    mine = {
        "": migration.OLD,
        "metric": ("support_routing_provider_errors_total", migration.OLD[1]),
        "denominator": (migration.OLD[0], "support_routing_confidence_count"),
    }[edited]
    for name in migration.RULES:
        AlertRule.objects.create(
            name=name,
            metric=mine[0],
            denominator=mine[1],
            description=migration.OLD_HIGH if name == "HighErrorRate" else "",
            threshold=0.05,
            severity="warning",
        )
    rules = AlertRule.objects.filter(name__in=migration.RULES)
    moved = (mine, migration.OLD_HIGH) if edited else (migration.NEW, migration.NEW_HIGH)
    for _ in range(2):  # idempotent
        migration.rule_source_update(apps, None)
        assert {(r.metric, r.denominator) for r in rules.all()} == {moved[0]}
        assert rules.get(name="HighErrorRate").description == moved[1]
        assert {r.description for r in rules.exclude(name="HighErrorRate")} == {""}
    for _ in range(2):
        migration.rule_source_restore(apps, None)
        assert {(r.metric, r.denominator) for r in rules.all()} == {mine}
        assert rules.get(name="HighErrorRate").description == migration.OLD_HIGH
