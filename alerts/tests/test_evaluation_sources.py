"""One evaluation run reads each metric source once per window whose rules read it, not
once per distinct window (seven with the seed rules): a level nobody windows (the outbox,
the queues, the knowledge base ...) is computed once per run. The rules' values are the
ones a full collection per window gives."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from alerts import selectors
from alerts.models import AlertRule, RuleEvaluation
from alerts.services import _rule_names, alert_rules_evaluate, rule_value
from calls.models import Call, PipelineStatus
from calls.transcription import BDA_FAILURE
from routing.models import RoutingDecision
from support import metrics as support_metrics
from tickets.services import ticket_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seed_rules")]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every registered source, counting its calls."""
    counted: Counter[str] = Counter()
    real = support_metrics.metric_sources()

    def counting(name: str, source: Any) -> Any:
        def call() -> Any:
            counted[name] += 1
            return source()

        return call

    sources = {name: counting(name, source) for name, source in real.items()}
    monkeypatch.setattr(support_metrics, "metric_sources", lambda: dict(sources))
    return counted


def _data(customer: Any) -> None:
    for i, age in enumerate([timedelta(minutes=1), timedelta(minutes=20), timedelta(hours=5)]):
        ticket = ticket_create(customer=customer, subject=f"T{uuid.uuid4()}", body="?")
        decision = RoutingDecision.objects.create(
            ticket=ticket,
            attempt_key="alerts",
            priority="normal",
            confidence=0.5 + i / 10,
            provider="local",
            processing_ms=1000 * (i + 1),
            cost_usd=Decimal("1.5"),
            correlation_id=uuid.uuid4(),
        )
        RoutingDecision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - age)
    Call.objects.create(
        contact_id="failed",
        pipeline_status=PipelineStatus.FAILED,
        pipeline_error=f"{BDA_FAILURE}: ServiceError",
    )


def _names_read() -> set[str]:
    return {name for rule in AlertRule.objects.filter(enabled=True) for name in _rule_names(rule)}


def test_each_source_runs_once_per_window_that_reads_it(customer, runs) -> None:
    _data(customer)
    rules = list(AlertRule.objects.filter(enabled=True))
    windows = {rule.window_seconds for rule in rules}
    assert len(windows) == 7

    report = alert_rules_evaluate()
    assert report.evaluated == len(rules)
    runs = Counter(runs)  # what the run did (the loop below reads the sources again)

    read = _names_read()
    for name, source in support_metrics.metric_sources().items():
        exported = selectors.metric_names_known(list(source()))
        if not exported & read:  # no rule reads it: the first window's reading only
            assert runs[name] == 1, (name, runs)
    # The routing rules have every window; the call rules two (5 min, 24 h), plus the
    # first window's reading of every source.
    assert runs["routing"] == 7
    assert runs["calls"] <= 3
    # 16 sources x 7 windows before
    assert sum(runs.values()) <= len(runs) + 6 + 2 + 2


def test_the_values_are_those_of_a_full_collection_per_window(customer, runs) -> None:
    _data(customer)
    now = timezone.now()
    alert_rules_evaluate(now=now)
    stored = {e.rule_id: e for e in RuleEvaluation.objects.filter(evaluated_at=now)}
    rules = list(AlertRule.objects.filter(enabled=True))
    assert set(stored) == {rule.pk for rule in rules}
    for rule in rules:
        full = support_metrics.metrics_collect(window_seconds=rule.window_seconds)
        expected = rule_value(rule, full, now=now)
        evaluation = stored[rule.pk]
        got = (evaluation.value, evaluation.raw_numerator, evaluation.raw_denominator)
        assert got == (expected.value, expected.raw_numerator, expected.raw_denominator), rule
    assert any(e.value for e in stored.values())  # not only zeros and no data


def test_a_source_failing_after_the_first_window_leaves_the_rules_reading_it(
    customer, monkeypatch
) -> None:
    """The routing source answers for the first window and fails for the others: the
    rules of those windows that read it are not evaluated (a source down is no reading),
    the others are."""
    _data(customer)
    real = support_metrics.metric_sources()
    windows: list[float] = []

    def routing() -> Any:
        windows.append(support_metrics.metrics_window_seconds())
        if len(windows) > 1:
            raise OperationalError("the database is away")
        return real["routing"]()

    sources = {**real, "routing": routing}
    monkeypatch.setattr(support_metrics, "metric_sources", lambda: dict(sources))
    rules = list(AlertRule.objects.filter(enabled=True))
    report = alert_rules_evaluate()

    routing_names = selectors.metric_names_known(list(real["routing"]()))
    first_window = windows[0]  # the one reading that answered
    assert len(windows) == 7
    reads_routing = {r.pk for r in rules if set(_rule_names(r)) & routing_names}
    unavailable = {
        r.pk for r in rules if r.pk in reads_routing and r.window_seconds != first_window
    }
    assert unavailable
    assert set(report.unavailable) == unavailable
    assert report.evaluated == len(rules) - len(unavailable)
