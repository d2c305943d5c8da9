"""Seed 004's routing metrics (``routing.metrics.routing_metrics``)."""

from __future__ import annotations

from typing import Any

import pytest

from routing import metrics
from routing.models import FeedbackVerdict, RoutingDecision, RoutingFailure, RoutingFeedback
from tickets import services as ticket_services
from tickets.models import Customer
from tickets.services import ticket_merge

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


def test_merged_tickets_are_left_out_as_on_the_dashboard(customer: Customer) -> None:
    """A merged ticket's decision, its verdict and its routing failure count nowhere in
    the window's figures, as on the dashboard (``routing.stats``: ``merged_into_id IS
    NULL``). Before, /metrics counted them: 2 decisions processed, a fallback, a review."""
    kept = _decision(customer)
    merged = _decision(customer, fallback_from="bedrock")
    RoutingDecision.objects.filter(pk=merged.pk).update(requires_manual_review=True)
    for decision in (kept, merged):
        RoutingFeedback.objects.create(
            decision=decision,
            ticket=decision.ticket,
            verdict=FeedbackVerdict.ACCEPTED if decision is kept else FeedbackVerdict.OVERRIDDEN,
            team_correct=decision is kept,
            priority_correct=True,
        )
    failed = ticket_services.ticket_create(customer=customer, subject="Refund", body="Again")
    RoutingFailure.objects.create(ticket=failed, permanent=True, error="DataError: x")
    ticket_merge(source=merged.ticket, target=kept.ticket)
    ticket_merge(source=failed, target=kept.ticket)

    families = {m.name: m for m in metrics.routing_metrics()}

    def samples(name: str) -> dict[str, float]:
        return {
            ",".join(s.labels.values()): s.value
            for s in families[f"support_routing_{name}"].samples
        }

    assert samples("tickets_processed") == {"local": 1}
    assert samples("outcomes") == {"decided": 1, "fell_back": 0, "failed": 0}
    assert samples("provider_errors") == {}
    assert samples("manual_review_rate") == {"": 0.0}
    assert samples("verdicts") == {"": 1}
    assert samples("accuracy") == {"overall": 1.0, "team": 1.0, "priority": 1.0}
    histogram = families["support_routing_processing_seconds"].samples
    assert [s.value for s in histogram if s.name.endswith("_count")] == [1]
