"""Reads of the routing app."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from routing.models import (
    CUSTOMER_TEXT_ATTEMPT,
    FeedbackVerdict,
    RouterModel,
    RoutingDecision,
    RoutingFailure,
    RoutingFeedback,
)
from support.auth.roles import is_supervisor
from support.errors import NotFound
from tickets.models import Ticket
from tickets.selectors import parse_ticket_ref, visible_ticket_ids

HISTORY_TOOL = "get_historical_context"


def routing_decision_list(*, ticket: Ticket) -> QuerySet[RoutingDecision]:
    return (
        RoutingDecision.objects.filter(ticket=ticket)
        .select_related("team", "router_model")
        .prefetch_related(
            # each verdict's team and actor are shown with it
            Prefetch("feedback", RoutingFeedback.objects.select_related("team", "actor"))
        )
        .order_by("-created_at", "-id")
    )


def routing_decision_latest(*, ticket: Ticket) -> RoutingDecision | None:
    return routing_decision_list(ticket=ticket).first()


class RoutingState:
    """Where a ticket's routing stands (seed 004's ``GET /tickets/{id}``
    ``routing_status``)."""

    DECIDED = "decided"
    PENDING = "pending"
    FAILED = "failed"
    EXPIRED = "expired"
    DISABLED = "disabled"
    NOT_ROUTED = "not_routed"


@dataclass(frozen=True)
class RoutingStatus:
    status: str
    reason: str | None  # in words; None once decided


def routing_status_get(*, ticket: Ticket, decided: bool, now: Any = None) -> RoutingStatus:
    """Whether a decision is there, still to come, or never coming, and why in words:
    ``decided``; ``failed`` (routing failed for good: ``RoutingFailure.permanent``, the
    sweep leaves it; the error named); ``expired`` (no decision is kept for a ticket older
    than ``ROUTING_DECISION_RETENTION_DAYS``: the purge deleted it, or there was none);
    ``disabled`` (``ROUTING_ENABLED`` off); ``not_routed`` (no decision and past the
    routing sweep's look-back: nothing routes it by itself); else ``pending`` (a
    decision is coming: the task or the sweep routes it, after a passing failure too,
    whatever the ticket's age: the sweep retries those past its look-back as well).
    ``decided``: the caller found a decision (one query otherwise)."""
    if decided:
        return RoutingStatus(RoutingState.DECIDED, None)
    now = now or timezone.now()
    failure = RoutingFailure.objects.filter(ticket_id=ticket.pk).first()
    if failure is not None and failure.permanent:
        return RoutingStatus(
            RoutingState.FAILED,
            "Routing this ticket failed for good and is not tried again by itself "
            f"({failure.error[:300] or 'no error recorded'}); a supervisor can route it "
            "again (admin: Routing failures).",
        )
    retrying = failure is not None  # a passing failure: the sweep tries it at any age
    days = int(settings.ROUTING_DECISION_RETENTION_DAYS)
    if not retrying and ticket.created_at <= now - timedelta(days=days):
        return RoutingStatus(
            RoutingState.EXPIRED,
            f"No routing decision is kept for this ticket: decisions are deleted {days} "
            "days after they are made (ROUTING_DECISION_RETENTION_DAYS), and the ticket "
            "is older.",
        )
    if not settings.ROUTING_ENABLED:
        return RoutingStatus(
            RoutingState.DISABLED,
            "Routing is turned off on this installation (ROUTING_ENABLED): no decision "
            "is made while it is.",
        )
    lookback = timedelta(seconds=float(settings.ROUTING_SWEEP_LOOKBACK_SECONDS))
    if not retrying and ticket.created_at <= now - lookback:
        return RoutingStatus(
            RoutingState.NOT_ROUTED,
            "The ticket has no routing decision and is older than the routing sweep looks "
            f"back ({lookback}, ROUTING_SWEEP_LOOKBACK_SECONDS): nothing routes it by itself.",
        )
    if failure is not None:
        again = failure.next_attempt_at
        return RoutingStatus(
            RoutingState.PENDING,
            f"Routing failed {failure.attempts} time(s) with a passing fault; it is tried "
            f"again from {again.isoformat() if again else 'the next sweep'}.",
        )
    return RoutingStatus(RoutingState.PENDING, "Waiting for the routing decision.")


def tickets_unrouted(*, now: Any = None) -> QuerySet[Ticket]:
    """Tickets with no routing decision, created more than ``ROUTING_SWEEP_AFTER_SECONDS``
    ago and either less than ``ROUTING_SWEEP_LOOKBACK_SECONDS`` ago (older ones predate
    routing or were left on purpose) or whose routing failed for a passing reason (a
    transient ``RoutingFailure``, whatever its age: the sweep keeps trying those, backing
    off, until they route), oldest first, those whose routing failed included: the
    ``support_routing_unrouted_tickets`` metric (the sweep's work is
    :func:`tickets_to_sweep`). A permanent failure older than the look-back is no longer
    counted here (``support_routing_failed_tickets{kind="permanent"}`` counts it)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.ROUTING_SWEEP_LOOKBACK_SECONDS)
    # Two index reads, not an OR the planner can only answer by reading every ticket:
    # the look-back's tickets (created_at) and the older transient failures (a small
    # table, joined by the ticket's key).
    recent = Ticket.objects.filter(created_at__gt=since).order_by().values("pk")
    retrying = (
        RoutingFailure.objects.filter(permanent=False, ticket__created_at__lte=since)
        .order_by()
        .values("ticket_id")
    )
    return (
        Ticket.objects.filter(
            pk__in=recent.union(retrying, all=True),
            created_at__lte=now - timedelta(seconds=settings.ROUTING_SWEEP_AFTER_SECONDS),
        )
        .exclude(Exists(RoutingDecision.objects.filter(ticket_id=OuterRef("pk"))))
        .order_by("created_at", "pk")
    )


def tickets_to_sweep(*, now: Any = None) -> QuerySet[Ticket]:
    """The routing sweep's work: :func:`tickets_unrouted` but those whose routing failed
    for good (recorded once, left to people) or failed lately and wait out their backoff
    (``RoutingFailure.next_attempt_at``)."""
    now = now or timezone.now()
    waiting = RoutingFailure.objects.filter(ticket_id=OuterRef("pk")).filter(
        Q(permanent=True) | Q(next_attempt_at__gt=now)
    )
    return tickets_unrouted(now=now).exclude(Exists(waiting))


def _history_numbers(decision: RoutingDecision) -> list[str]:
    numbers = []
    for call in decision.tool_calls or []:
        output = call.get("output") if isinstance(call, dict) else None
        if call.get("name") == HISTORY_TOOL and isinstance(output, dict):
            for past in output.get("recent_tickets") or []:
                if isinstance(past, dict) and past.get("number"):
                    numbers.append(str(past["number"]))
    return numbers


def _ticket_pk(number: str) -> int | None:
    try:
        return parse_ticket_ref(number)
    except NotFound:
        return None


#: The customer-history figures in the tool trace that count the customer's tickets
#: (the whole customer's, any team's): withheld from agents (null, named in the output's
#: ``withheld``), as the customer context merges its ticket-counting churn reasons.
HISTORY_COUNTS = (
    "tickets_last_7_days",
    "open_tickets",
    "common_issues",
    "past_escalations",
    "escalation_history",
)
PRIORITY_TOOL = "calculate_priority"
#: What an agent is shown instead of a figure counting the customer's tickets.
HISTORY_SUMMARISED = "ticket history summarised for supervisors"
#: ``calculate_priority``'s repeat-contact reason ("+10 2 recent ticket(s)"), as the
#: local provider's reasoning quotes it too.
RECENT_TICKETS_REASON = re.compile(r"[+-]?\d+(?:\.\d+)? \d+ recent ticket\(s\)")
#: What an agent is shown instead of an LLM's own reasoning (``AI_PROVIDER=bedrock`` /
#: ``openai``): free text that may quote or paraphrase the whole history's counts.
MODEL_REASONING_WITHHELD = (
    "The model's own reasoning is shown to supervisors: it may quote the customer's "
    "whole ticket history, other teams' tickets included."
)
LOCAL_PROVIDER = "local"


def _history_summarised(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with the figures that count the customer's tickets withheld: the
    history tool's counts, the priority tool's ``recent_tickets`` input and its
    repeat-contact reason."""
    name = call.get("name")
    if name == HISTORY_TOOL and isinstance(call.get("output"), dict):
        output = dict(call["output"])
        withheld = [key for key in HISTORY_COUNTS if key in output]
        output.update(dict.fromkeys(withheld))
        output["withheld"] = withheld
        return {**call, "output": output}
    if name == PRIORITY_TOOL:
        call = dict(call)
        if isinstance(call.get("input"), dict) and "recent_tickets" in call["input"]:
            call["input"] = {**call["input"], "recent_tickets": None}
            call["input"]["withheld"] = ["recent_tickets"]
        if isinstance(call.get("output"), dict):
            output = call["output"]
            call["output"] = {**output, "reasons": _reasons_summarised(output.get("reasons"))}
    return call


def _reasons_summarised(reasons: Any) -> Any:
    """The priority reasons with the repeat-contact one (a count of the customer's recent
    tickets, and its points, 5 a ticket) as :data:`HISTORY_SUMMARISED`."""
    if not isinstance(reasons, list):
        return reasons
    return [
        RECENT_TICKETS_REASON.sub(HISTORY_SUMMARISED, r) if isinstance(r, str) else r
        for r in reasons
    ]


def routing_decisions_for_viewer(
    decisions: list[RoutingDecision], *, user: Any
) -> list[RoutingDecision]:
    """The decisions as ``user`` may see them (the ticket page's panel, the routing API,
    seed 004's routing decision). Supervisors see them as stored (the audit record of what
    the AI saw); none of this applies to them, and no query is made.

    For an agent, nothing shown counts the customer's tickets (the router reads the
    customer's whole history, other teams' tickets included), whatever the agent may see
    (withholding only when something is hidden would say that it is):

    - the customer-history tool's output lists only the past tickets the agent may see,
      and its counts (:data:`HISTORY_COUNTS`) are null, named in its ``withheld``;
    - the priority tool's ``recent_tickets`` input is null (named in the input's
      ``withheld``) and its repeat-contact reason ("+10 2 recent ticket(s)") reads
      :data:`HISTORY_SUMMARISED`, in the trace and in the decision's ``reasons``;
    - the reasoning: the local provider's (written from the tools' reasons; a demo
      decision's too) with that reason summarised the same way; an LLM's (free text
      that may quote or paraphrase the counts) replaced by
      :data:`MODEL_REASONING_WITHHELD`;
    - past tickets the agent may not see, named by number or subject in the reasons or
      the reasoning, read "[a ticket you cannot see]".

    The priority and its score stay: they are the decision's (the score holds the
    repeat-contact points, as the customer context's churn score holds its reasons').
    One query for all the decisions. The instances are changed in memory for display only
    and never saved."""
    if is_supervisor(user):
        return decisions
    pks = {n: _ticket_pk(n) for d in decisions for n in _history_numbers(d)}
    wanted = [pk for pk in pks.values() if pk is not None]
    visible = visible_ticket_ids(user, wanted)
    for decision in decisions:
        calls = []
        hidden: list[dict[str, Any]] = []
        for call in decision.tool_calls or []:
            if not isinstance(call, dict):
                calls.append(call)
                continue
            output = call.get("output")
            if call.get("name") == HISTORY_TOOL and isinstance(output, dict):
                recent: list[dict[str, Any]] = []
                for past in output.get("recent_tickets") or []:
                    if not isinstance(past, dict):
                        continue
                    seen = pks.get(str(past.get("number"))) in visible
                    (recent if seen else hidden).append(past)
                call = {**call, "output": {**output, "recent_tickets": recent}}
            calls.append(_history_summarised(call))
        decision.tool_calls = calls
        decision.reasons = _reasons_summarised(decision.reasons or [])
        # a demo decision's reasoning is the local provider's under an LLM's name
        if decision.provider == LOCAL_PROVIDER or decision.demo:
            decision.reasoning = RECENT_TICKETS_REASON.sub(HISTORY_SUMMARISED, decision.reasoning)
        else:
            decision.reasoning = MODEL_REASONING_WITHHELD
        if hidden:  # reasons (and a local reasoning edited by hand) may quote them
            decision.reasoning = _masked(decision.reasoning, hidden)
            decision.reasons = [
                _masked(r, hidden) if isinstance(r, str) else r for r in decision.reasons
            ]
    return decisions


HIDDEN_TICKET = "[a ticket you cannot see]"


def _masked(text: str, hidden: list[dict[str, Any]]) -> str:
    """``text`` without the numbers and subjects of the past tickets in ``hidden`` (a
    model that read the history tool may quote them; a paraphrase is beyond this)."""
    for past in hidden:
        for value in (str(past.get("number") or ""), str(past.get("subject") or "").strip()):
            if len(value) >= 4:
                text = re.sub(re.escape(value), HIDDEN_TICKET, text, flags=re.IGNORECASE)
    return text


def tickets_awaiting_customer_text(*, ticket_ids: list[int]) -> list[int]:
    """Of ``ticket_ids``, those with a decision held for review for want of the
    customer's words (``NO_CUSTOMER_TEXT``) and none made again on them yet
    (``services.CUSTOMER_TEXT_ATTEMPT``): the candidates a customer's message may route
    again (the message.created subscriber's filter; the service checks the rest). One
    query."""
    from routing.providers.base import NO_CUSTOMER_TEXT

    return sorted(
        RoutingDecision.objects.filter(
            ticket_id__in=ticket_ids,
            requires_manual_review=True,
            review_reasons__contains=[NO_CUSTOMER_TEXT],
        )
        .exclude(
            Exists(
                RoutingDecision.objects.filter(
                    ticket_id=OuterRef("ticket_id"), attempt_key=CUSTOMER_TEXT_ATTEMPT
                )
            )
        )
        .values_list("ticket_id", flat=True)
        .distinct()
    )


def routing_review_queue() -> QuerySet[Ticket]:
    """Tickets waiting for a person to check their routing decision."""
    return Ticket.objects.filter(needs_review=True).select_related("customer", "team")


def routing_verdicts_latest() -> QuerySet[RoutingFeedback]:
    """Each reviewed decision's latest verdict only: a decision accepted twice counts
    once, and one accepted then overridden counts as overridden (the later verdict
    replaces the earlier one in every accuracy figure; the earlier rows stay, as history
    and training data). A verdict whose decision was purged (retention) is one: the
    purge keeps only the latest verdict of each decision it deletes."""
    later = RoutingFeedback.objects.filter(
        decision_id=OuterRef("decision_id"), pk__gt=OuterRef("pk")
    )
    return RoutingFeedback.objects.filter(~Exists(later))


def routing_accuracy() -> dict[str, Any]:
    """Accuracy over reviewed decisions, each judged by its latest verdict (accepted or
    overridden; :func:`routing_verdicts_latest`). Decisions still kept only: verdicts
    outlive their purged decisions as training rows, not as a current figure."""
    agg = (
        routing_verdicts_latest()
        .filter(decision__isnull=False)
        .aggregate(
            reviewed=Count("id"),
            overridden=Count("id", filter=Q(verdict=FeedbackVerdict.OVERRIDDEN)),
            team_ok=Count("id", filter=Q(team_correct=True)),
            priority_ok=Count("id", filter=Q(priority_correct=True)),
        )
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
    of ``labels``: the extra rows for the next training run, each decision by its latest
    verdict (:func:`routing_verdicts_latest`: one accepted, then overridden, teaches the
    correction, not both labels). Each text is redacted (``support.redaction.redact``,
    with its customer's names) before it is trained on: a model's vocabulary keeps every
    word it saw, and an erasure, which redacts the feedback row, cannot reach into a
    trained model."""
    from support.redaction import redact
    from tickets.context.privacy import customer_redaction_names

    rows: list[tuple[str, str]] = []
    names: dict[int, tuple[str, ...]] = {}
    verdicts = routing_verdicts_latest().exclude(text="").select_related("ticket")
    for fb in verdicts.order_by("id"):
        label = fb.intent if fb.intent in labels else fb.category
        if label in labels:
            customer_id = fb.ticket.customer_id
            if customer_id not in names:
                names[customer_id] = customer_redaction_names(customer_id)
            rows.append((redact(fb.text, names=names[customer_id]), label))
    return rows


def known_categories() -> list[str]:
    """The categories a decision can carry: the built-in map's (``DEFAULT_CATEGORY_TEAMS``)
    and the active router model's (its intents' categories, or its labels when it was
    trained without). What the category -> team map may name: a row for any other
    string (a typo, another case: "refund" for "REFUND") never matches."""
    from routing.context import DEFAULT_CATEGORY_TEAMS

    found = set(DEFAULT_CATEGORY_TEAMS)
    active = RouterModel.objects.filter(is_active=True).values("labels", "label_to_category")
    for model in active:
        mapping = model["label_to_category"] or {}
        found |= (
            {str(c) for c in mapping.values()} if mapping else {str(x) for x in model["labels"]}
        )
    return sorted(found)
