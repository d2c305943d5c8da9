"""The seed rules read the names the real sources export, over the rule's window: routing
decisions in the database fire DailyCost (summed per-ticket cost over 24 h) and HighLatency
(10 min), and older rows do not count."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule
from alerts.services import alert_rules_evaluate
from routing.models import RoutingDecision
from tickets.services import ticket_create


def _decisions(customer: Any, *, cost: str, processing_ms: float, age: timedelta, n: int) -> None:
    for i in range(n):
        ticket = ticket_create(customer=customer, subject=f"T{uuid.uuid4()}", body="?")
        decision = RoutingDecision.objects.create(
            ticket=ticket,
            attempt_key="alerts",
            priority="normal",
            confidence=0.9,
            provider="local",
            processing_ms=processing_ms,
            cost_usd=Decimal(cost),
            correlation_id=uuid.uuid4(),
        )
        RoutingDecision.objects.filter(pk=decision.pk).update(
            created_at=timezone.now() - age - timedelta(seconds=i)
        )


def _only(*names: str) -> None:
    AlertRule.objects.exclude(name__in=names).update(enabled=False)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_daily_cost_sums_the_decisions_of_the_last_24_hours(customer):
    _only("DailyCost")
    _decisions(customer, cost="100", processing_ms=10, age=timedelta(hours=23), n=3)
    _decisions(customer, cost="100", processing_ms=10, age=timedelta(hours=25), n=2)
    assert alert_rules_evaluate().fired == []  # $300 in 24 h ($500 with the older ones)

    _decisions(customer, cost="50.01", processing_ms=10, age=timedelta(minutes=1), n=1)
    report = alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1))
    assert report.fired == [AlertRule.objects.get(name="DailyCost").pk]
    assert Alert.objects.get().value == pytest.approx(350.01)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_high_latency_averages_the_last_ten_minutes(customer):
    _only("HighLatency")
    _decisions(customer, cost="0", processing_ms=9000, age=timedelta(minutes=11), n=3)
    _decisions(customer, cost="0", processing_ms=1000, age=timedelta(minutes=1), n=1)
    assert alert_rules_evaluate().fired == []  # 1 s in the window (7 s with the older ones)

    _decisions(customer, cost="0", processing_ms=9500, age=timedelta(seconds=5), n=1)
    assert len(alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1)).fired) == 1
    assert Alert.objects.get().value == pytest.approx(5.25)
