"""Seed 004's routing metrics for ``GET /metrics`` (registered in ``RoutingConfig.ready``).

Seed name → exported name (all over the window, ``METRICS_WINDOW_SECONDS``):
TicketsProcessed → ``support_routing_tickets_processed``; ProcessingTime →
``support_routing_processing_seconds`` (histogram); ConfidenceScore →
``support_routing_confidence`` (histogram) and ``support_routing_confidence_average``;
ManualReviewRate → ``support_routing_manual_review_rate`` (and, beside it, the out-of-scope
share ``support_routing_out_of_scope_rate``); RoutingAccuracy →
``support_routing_accuracy`` (from people's verdicts); TicketingSystemSyncFailures →
``support_routing_sync_failures`` (failed attempts to update the ticketing system, each
retry counted, plus the syncs requested while the circuit breaker holds them back: an
outage shows at once and keeps counting with the traffic);
BedrockAPIErrors → ``support_routing_provider_errors
{provider="bedrock"}`` (decisions that fell back because their provider failed); tokens and
cost → ``support_routing_tokens``, ``support_routing_cost_usd``,
``support_routing_cost_per_ticket_usd``. Not windowed: ``support_routing_unrouted_tickets``
(tickets still without a decision; the routing sweep's work, which takes those whose
routing failed for a passing reason at any age) and ``support_routing_failed_tickets{kind}``
(those whose routing failed: permanent, or retrying: the sweep does, whatever their age).
``support_routing_outcomes{outcome}`` (windowed) counts every ticket routed or failed:
``decided``, ``fell_back`` (provider errors) and ``failed`` (no decision: routing failed
outright), the error-rate alarms' numerator and denominator.

Decisions on merged tickets, their verdicts and the routing failures of merged tickets are
left out of the windowed figures, as on the dashboard (``routing.stats``): the
conversation lives on in the ticket they were merged into. The two levels of the routing
sweep's work (unrouted and failed tickets) count what the sweep does, merged or not.

Averages and ratios whose denominator is 0 in the window (no decision, no verdict, no
decision by a router with an out-of-scope detector) are left out, not published as 0: a
family with no sample is Prometheus' "no data" (an alarm rule's selector then finds
nothing), while 0 would read as "every decision had confidence 0 / was wrong". Accuracy
counts each decision's latest verdict only (``selectors.routing_verdicts_latest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Q, Sum
from prometheus_client.core import Metric

from routing import selectors
from routing.models import FeedbackVerdict, RoutingDecision, RoutingFailure
from routing.services import TICKETING_SYNC_KIND
from support.delivery.selectors import failures_since
from support.metrics import gauge, histogram_from_queryset, window_start

PROCESSING_BUCKETS_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sync_failed_attempts(since: Any) -> int:
    """Ticketing syncs that failed since ``since``: failed attempts, plus syncs requested
    since then that the ticketing system's open circuit holds back (seed 004's stream
    Lambda would have tried, and failed, each of them)."""
    return failures_since(target_kind=TICKETING_SYNC_KIND, since=since)


def routing_metrics() -> Iterator[Metric]:
    since = window_start()
    # created_at index; merged tickets out, as on the dashboard (routing/stats.py)
    decisions = RoutingDecision.objects.filter(
        created_at__gte=since, ticket__merged_into__isnull=True
    )

    processed = gauge(
        "routing_tickets_processed",
        "Routing decisions made in the window, by provider.",
        ["provider"],
    )
    for row in decisions.values("provider").annotate(n=Count("pk")).order_by():
        processed.add_metric([row["provider"]], row["n"])
    yield processed

    yield histogram_from_queryset(
        "routing_processing_seconds",
        "Time the router took per decision (seed 004 ProcessingTime).",
        decisions,
        field="processing_ms",
        buckets=PROCESSING_BUCKETS_SECONDS,
        scale=1000.0,
    )
    yield histogram_from_queryset(
        "routing_confidence",
        "Confidence of each decision (seed 004 ConfidenceScore).",
        decisions,
        field="confidence",
        buckets=CONFIDENCE_BUCKETS,
    )

    totals = decisions.aggregate(
        n=Count("pk"),
        # in the same query as ``n``: ``decided`` (n - fell_back) is read from one snapshot
        fell_back=Count("pk", filter=~Q(fallback_from="")),
        review=Count("pk", filter=Q(requires_manual_review=True)),
        unlike=Count("pk", filter=Q(out_of_scope=True)),
        scored=Count("pk", filter=Q(out_of_scope__isnull=False)),
        confidence=Avg("confidence"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cost=Sum("cost_usd"),
    )
    n = int(totals["n"] or 0)

    average = gauge(
        "routing_confidence_average",
        "Average decision confidence in the window (no sample without decisions).",
    )
    if totals["confidence"] is not None:
        average.add_metric([], float(totals["confidence"]))
    yield average

    review = gauge(
        "routing_manual_review_rate",
        "Share of decisions in the window flagged for manual review (0-1).",
    )
    if n:
        review.add_metric([], totals["review"] / n)
    yield review

    unlike = gauge(
        "routing_out_of_scope_rate",
        "Share of the window's decisions by a router with an out-of-scope detector whose "
        "text it found unlike any intent it was trained on (sent to review; 0-1).",
    )
    scored = int(totals["scored"] or 0)
    if scored:
        unlike.add_metric([], totals["unlike"] / scored)
    yield unlike

    sync = gauge(
        "routing_sync_failures",
        "Failed attempts to update the ticketing system in the window (every retry "
        "counts), plus syncs requested in the window that its open circuit holds back "
        "(seed 004 TicketingSystemSyncFailures).",
    )
    sync.add_metric([], sync_failed_attempts(since))
    yield sync

    errors = gauge(
        "routing_provider_errors",
        "Decisions in the window whose provider failed and fell back, by failed provider "
        "(provider=bedrock is seed 004's BedrockAPIErrors).",
        ["provider"],
    )
    failed = (
        decisions.exclude(fallback_from="")
        .values("fallback_from")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in failed:
        errors.add_metric([row["fallback_from"]], row["n"])
    yield errors

    # Seed 004's error rate counts the tickets routing could not decide at all: a ticket
    # whose routing failed outright has no decision, so provider errors / tickets processed
    # read 0/0 (no data, no alarm) through a total outage. The error-rate alarms divide
    # ``outcome=~"fell_back|failed"`` by every outcome.
    outcomes = gauge(
        "routing_outcomes",
        "Tickets routed or failed in the window, by outcome: decided (the provider "
        "answered), fell_back (a decision after the provider failed) or failed (routing "
        "failed outright, no decision: its last failure in the window).",
        ["outcome"],
    )
    # Both from the one aggregate above: the provider-errors rows are another query, and
    # fallback decisions made between the two made ``decided`` negative (n - more).
    fell_back = int(totals["fell_back"] or 0)
    outcomes.add_metric(["decided"], n - fell_back)
    outcomes.add_metric(["fell_back"], fell_back)
    failures = RoutingFailure.objects.filter(
        updated_at__gte=since, ticket__merged_into__isnull=True
    )
    outcomes.add_metric(["failed"], failures.count())
    yield outcomes

    tokens = gauge("routing_tokens", "Model tokens used in the window.", ["direction"])
    tokens.add_metric(["in"], float(totals["tokens_in"] or 0))
    tokens.add_metric(["out"], float(totals["tokens_out"] or 0))
    yield tokens
    cost = float(totals["cost"] or 0)
    cost_sum = gauge("routing_cost_usd", "Model cost of the decisions in the window (USD).")
    cost_sum.add_metric([], cost)
    yield cost_sum
    per_ticket = gauge(
        "routing_cost_per_ticket_usd", "Average model cost per decision in the window (USD)."
    )
    if n:
        per_ticket.add_metric([], cost / n)
    yield per_ticket
    tokens_per_ticket = gauge(
        "routing_tokens_per_ticket", "Average tokens (in + out) per decision in the window."
    )
    used = float((totals["tokens_in"] or 0) + (totals["tokens_out"] or 0))
    if n:
        tokens_per_ticket.add_metric([], used / n)
    yield tokens_per_ticket

    verdicts = (
        selectors.routing_verdicts_latest()
        .filter(
            created_at__gte=since,
            decision__isnull=False,
            decision__ticket__merged_into__isnull=True,
        )
        .aggregate(
            n=Count("pk"),
            accepted=Count("pk", filter=Q(verdict=FeedbackVerdict.ACCEPTED)),
            team=Count("pk", filter=Q(team_correct=True)),
            priority=Count("pk", filter=Q(priority_correct=True)),
        )
    )
    judged = int(verdicts["n"] or 0)
    accuracy = gauge(
        "routing_accuracy",
        "Share of decisions people judged correct in the window (0-1), from each "
        "decision's latest verdict: overall (accepted), team and priority.",
        ["dimension"],
    )
    for dimension, key in (("overall", "accepted"), ("team", "team"), ("priority", "priority")):
        if judged:
            accuracy.add_metric([dimension], verdicts[key] / judged)
    yield accuracy
    feedback = gauge(
        "routing_verdicts",
        "Reviewed decisions whose latest verdict was given in the window.",
    )
    feedback.add_metric([], judged)
    yield feedback

    unrouted = gauge(
        "routing_unrouted_tickets",
        "Tickets still without a routing decision ROUTING_SWEEP_AFTER_SECONDS after they "
        "were created: up to ROUTING_SWEEP_LOOKBACK_SECONDS old, and older ones whose "
        "routing failed for a passing reason (the sweep retries those at any age); 0 while "
        "routing is off.",
    )
    unrouted.add_metric([], selectors.tickets_unrouted().count() if settings.ROUTING_ENABLED else 0)
    yield unrouted

    failing = gauge(
        "routing_failed_tickets",
        "Tickets whose routing failed and that have no decision yet, by kind: permanent "
        "(never retried: the admin's Routing failures page routes them again) or retrying "
        "(the sweep tries again after a backoff, whatever the ticket's age, until it routes).",
        ["kind"],
    )
    kinds = dict(RoutingFailure.objects.values_list("permanent").annotate(n=Count("pk")).order_by())
    failing.add_metric(["permanent"], kinds.get(True, 0))
    failing.add_metric(["retrying"], kinds.get(False, 0))
    yield failing
