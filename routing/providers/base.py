"""The provider interface, the review rules every provider shares, and the cost table."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from routing.schemas import ProviderResult, ToolTrace
from routing.tools import TicketContext
from support.fallback import ProviderFailed

AMBIGUITY_MARGIN = 0.15
#: The review reason of a ticket with no words of the customer to route on (a ticket the
#: system opened, e.g. for an IVR failure, before the customer writes: ``routing.context.
#: ticket_text``): whatever the classifier makes of nothing, a person decides.
NO_CUSTOMER_TEXT = "no words from the customer to route on"
#: The review reason of a decision whose confidence no classifier measured: its figure is
#: then 0, whatever the model said of itself.
CONFIDENCE_NOT_MEASURED = "confidence not measured"
# Tools an LLM provider must have called for its decision to be applied without a person:
# the classification, the service status (outage / known issue), the priority score and
# the team rules. (VIP tier and history feed calculate_priority directly.)
REQUIRED_TOOLS = ("classify_issue", "check_service_status", "calculate_priority", "route_to_team")


class ProviderUnavailable(ProviderFailed):
    """The provider could not decide (after its own bounded retries). Its message is ours
    (``support.fallback.provider_error_summary`` of each failure), never the model's."""


class RoutingProvider(Protocol):
    name: str

    def decide(self, ctx: TicketContext) -> ProviderResult: ...


def cost_usd(model_id: str, tokens_in: int, tokens_out: int) -> Decimal:
    """Estimated cost from ``ROUTING_PRICES`` (USD per 1,000 tokens in / out)."""
    price_in, price_out = settings.ROUTING_PRICES.get(model_id, (0.0, 0.0))
    value = tokens_in / 1000 * price_in + tokens_out / 1000 * price_out
    return Decimal(str(round(value, 6)))


def rules_decision(ctx: TicketContext) -> dict[str, dict[str, Any]]:
    """What the rule tools say for ``ctx`` on their own: the classifier's category, then the
    priority and team for it (the local provider's run, on a fresh trace).

    An LLM's tool calls are not enough to check it against: the model chooses their
    arguments (a category of its own to ``calculate_priority`` or ``route_to_team``, the
    service ids), and text in the ticket may tell it which. The rules' own run takes none."""
    from routing.providers.local import run_tools

    return run_tools(ctx, ToolTrace())


def category_probability(
    ctx: TicketContext, classification: dict[str, Any] | None, category: str
) -> float | None:
    """The classifier's calibrated probability that the ticket is of ``category`` (the
    probabilities are temperature-scaled on a held-out split, ``classifier.train``), read
    from ``classification`` (``classify_issue``'s output for the ticket): its own category's,
    a runner-up's, or, for a category beyond the three it lists, from its whole distribution
    (0 for a category it was never trained on). None when there is no classification to read
    (nothing measured the decision)."""
    if not classification or "category_confidence" not in classification:
        return None
    if category == classification.get("category"):
        return float(classification["category_confidence"])
    for ranked in classification.get("categories", []):
        if ranked.get("category") == category:
            return float(ranked["probability"])
    probs, _ = ctx.router.analyse([ctx.text])
    return round(ctx.router.category_confidences(probs[0]).get(category, 0.0), 4)


def confidence_measure(
    result: ProviderResult, ctx: TicketContext, rules: dict[str, dict[str, Any]]
) -> None:
    """Give an LLM decision the classifier's confidence instead of its own.

    A model's ``confidence`` is a number it writes; nothing measures it. The decision's
    confidence (the figure compared with ``ROUTING_REVIEW_THRESHOLD``, shown, synced and
    returned as seed 004's ``confidence_score``) becomes the calibrated probability of the
    decision's category from the classifier's own run (``rules``: :func:`rules_decision`,
    on the ticket's text, with no argument from the model). A model that picks another
    category than the classifier's gets that category's probability, which is low: the
    decision goes to review. The model's figure is kept as ``model_stated_confidence``: it
    can add a review reason (a model unsure of itself), never remove one. No classification
    to read: confidence 0 and ``confidence_measured`` False (reason "confidence not
    measured"), never the model's figure."""
    decision = result.decision
    result.model_stated_confidence = decision.confidence
    measured = category_probability(ctx, rules.get("classification"), decision.category)
    result.confidence_measured = measured is not None
    decision.confidence = min(1.0, max(0.0, measured or 0.0))


def review_reasons(
    result: ProviderResult,
    ctx: TicketContext,
    rules: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Why a person should check this decision: low confidence or conflicting signals.

    An LLM decision (whose input holds customer text that may try to steer it: a prompt
    injection) is also checked against :func:`rules_decision` (``rules``, run here when not
    given): a team other than the rules' or a priority above theirs is applied only after a
    person looked. The local provider's decision *is* the rules' decision, so it is not run
    twice. The confidence compared with the threshold is the classifier's calibrated one
    (:func:`confidence_measure`); an LLM's own figure below the threshold adds a reason."""
    threshold = settings.ROUTING_REVIEW_THRESHOLD
    decision = result.decision
    reasons: list[str] = []
    if not ctx.text.strip():
        reasons.append(NO_CUSTOMER_TEXT)
    if not result.confidence_measured:
        reasons.append(CONFIDENCE_NOT_MEASURED)
    elif decision.confidence < threshold:
        reasons.append(f"confidence {decision.confidence:.2f} is below {threshold:.2f}")
    stated = result.model_stated_confidence
    if stated is not None and stated < threshold:
        reasons.append(f"the model stated confidence {stated:.2f} (below {threshold:.2f})")
    if not decision.team or decision.team not in ctx.team_names:
        reasons.append(f"no known team for category {decision.category or '?'}")
    if result.provider != "local":
        called = {call["name"] for call in result.trace.calls}
        skipped = [name for name in REQUIRED_TOOLS if name not in called]
        if skipped:
            reasons.append(f"the model skipped required tools: {', '.join(skipped)}")
    classification: dict[str, Any] | None = result.trace.last("classify_issue")
    if classification and classification.get("out_of_scope"):
        reasons.append(
            f"unlike any trained intent (in-scope score {classification['in_scope']:.2f})"
        )
    if classification:
        ranked = classification.get("categories", [])
        if len(ranked) > 1:
            (first, p1), (second, p2) = (
                (ranked[0]["category"], ranked[0]["probability"]),
                (ranked[1]["category"], ranked[1]["probability"]),
            )
            if p1 - p2 < AMBIGUITY_MARGIN and ctx.team_map.get(first) != ctx.team_map.get(second):
                reasons.append(f"ambiguous between {first} ({p1:.2f}) and {second} ({p2:.2f})")
        if decision.category and decision.category != classification["category"]:
            reasons.append(
                f"model says {decision.category}, classifier says {classification['category']}"
            )
    routed: dict[str, Any] | None = result.trace.last("route_to_team")
    if routed and routed.get("team") and decision.team != routed["team"]:
        reasons.append(f"model chose {decision.team}, rules say {routed['team']}")
    if result.provider != "local":
        from tickets.models import PRIORITY_RANK

        rules = rules if rules is not None else rules_decision(ctx)
        team, priority = rules["team"].get("team") or "", rules["priority"]["priority"]
        reason = f"model chose {decision.team}, rules say {team}"
        if team and decision.team != team and reason not in reasons:
            reasons.append(reason)
        if PRIORITY_RANK.get(decision.priority, 1) > PRIORITY_RANK.get(priority, 1):
            reasons.append(f"model chose priority {decision.priority}, rules say {priority}")
    if decision.requires_manual_review and not reasons:
        reasons.append("the model asked for a review")
    return reasons
