"""Seed 004's routing metrics (``routing.metrics.routing_metrics``)."""

from __future__ import annotations

from typing import Any

import pytest

from routing import metrics
from routing.models import RoutingDecision
from tickets import services as ticket_services
from tickets.models import Customer

pytestmark = pytest.mark.django_db


def _decision(customer: Customer, *, fallback_from: str = "") -> RoutingDecision:
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="Twice")
    return RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.9,
        provider="local",
        fallback_from=fallback_from,
        correlation_id=ticket.correlation_id,
    )


def test_routing_outcomes_decided_is_never_negative_and_counts_decisions_without_fallback(
    customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``decided`` and ``fell_back`` come from one snapshot of the window's decisions.
    Before, ``decided`` was the decisions counted by one query less the fallbacks counted
    by a later one: fallback decisions made in between (here, while the sync failures are
    read) made it negative (1 + 1 decisions, then 3 more fallbacks: decided -2)."""
    _decision(customer)
    _decision(customer, fallback_from="bedrock")
    real = metrics.sync_failed_attempts

    def meanwhile(since: Any) -> int:  # runs between the metrics' queries
        for _ in range(3):
            _decision(customer, fallback_from="bedrock")
        return real(since)

    monkeypatch.setattr(metrics, "sync_failed_attempts", meanwhile)
    family = next(m for m in metrics.routing_metrics() if m.name == "support_routing_outcomes")
    outcomes = {s.labels["outcome"]: s.value for s in family.samples}
    assert outcomes == {"decided": 1, "fell_back": 1, "failed": 0}


def test_routing_outcomes_decided_equals_the_decisions_without_fallback(
    customer: Customer,
) -> None:
    for fallback_from in ("", "", "bedrock", "openai", ""):
        _decision(customer, fallback_from=fallback_from)
    family = next(m for m in metrics.routing_metrics() if m.name == "support_routing_outcomes")
    outcomes = {s.labels["outcome"]: s.value for s in family.samples}
    without = RoutingDecision.objects.filter(fallback_from="").count()
    assert outcomes == {"decided": without, "fell_back": 2, "failed": 0}
    assert without == 3
