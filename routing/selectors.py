"""Reads of the routing app."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback
from tickets.models import Ticket


def routing_decision_list(*, ticket: Ticket) -> QuerySet[RoutingDecision]:
    return (
        RoutingDecision.objects.filter(ticket=ticket)
        .select_related("team", "router_model")
        .prefetch_related("feedback")
        .order_by("-created_at", "-id")
    )


def routing_decision_latest(*, ticket: Ticket) -> RoutingDecision | None:
    return routing_decision_list(ticket=ticket).first()


def routing_review_queue() -> QuerySet[Ticket]:
    """Tickets waiting for a person to check their routing decision."""
    return Ticket.objects.filter(needs_review=True).select_related("customer", "team")


def routing_accuracy() -> dict[str, Any]:
    """Accuracy measured from people's verdicts (accepted or overridden decisions)."""
    agg = RoutingFeedback.objects.aggregate(
        reviewed=Count("id"),
        overridden=Count("id", filter=Q(verdict=FeedbackVerdict.OVERRIDDEN)),
        team_ok=Count("id", filter=Q(team_correct=True)),
        priority_ok=Count("id", filter=Q(priority_correct=True)),
    )
    n = agg["reviewed"]
    return {
        "reviewed": n,
        "overridden": agg["overridden"],
        "team_accuracy": round(agg["team_ok"] / n, 4) if n else None,
        "priority_accuracy": round(agg["priority_ok"] / n, 4) if n else None,
    }


def routing_feedback_examples(*, labels: set[str]) -> list[tuple[str, str]]:
    """(text, label) pairs from overrides and acceptances whose intent or category is one
    of ``labels``: the extra rows for the next training run."""
    rows: list[tuple[str, str]] = []
    for fb in RoutingFeedback.objects.exclude(text="").order_by("id"):
        label = fb.intent if fb.intent in labels else fb.category
        if label in labels:
            rows.append((fb.text, label))
    return rows
