"""The routing part of the demo (a ``load_demo`` step): a short, clearly labelled history.

A fresh demo is routed by the local classifier, which uses no model provider, never fails
and has had no verdicts yet, so seed 004's RoutingAccuracy, BedrockAPIErrors,
TicketingSystemSyncFailures, tokens and cost would all read 0 on ``/metrics`` and on the
dashboard. This step records what a few weeks on Bedrock would have left behind, through
the real services where there are some:

- the first ``HISTORY_TICKETS`` demo tickets are routed (``routing_decide``, the ``initial``
  attempt the workers would make, so they find the work done) by a stand-in for the Bedrock
  provider: it reports the token usage and cost of a Claude Haiku call for the classifier's
  decision, and every ``FAIL_EVERY``-th call raises ``ProviderUnavailable`` so the real
  fallback to the local router records a Bedrock error;
- agents accept or correct some of those decisions (``routing_decision_accept`` /
  ``routing_decision_override``), which gives routing accuracy;
- two decisions' ticketing-system syncs are recorded as dead letters after three refused
  attempts (no request is made: the demo has no ticketing system).

Every such row says "Demo history" in its reasoning, fallback reason or error, and the
decisions are marked ``RoutingDecision.demo``: the ticket's routing panel shows them with a
"Demo data" badge and the dashboard's routing widgets say how many of their decisions are
demo ones (before, only the reasoning's first words told an invented Bedrock decision from
a real one). Idempotent: a ticket already routed, judged or synced is left as it is; the
mark is set on every load, so a demo loaded before it existed gets it on the next load.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from routing import services
from routing.models import RoutingDecision, SyncStatus
from routing.providers.base import ProviderUnavailable, cost_usd
from routing.providers.local import LocalProvider
from routing.schemas import ProviderResult
from routing.tools import TicketContext
from support.delivery.models import Attempt, Delivery, Outcome
from support.models import DeliveryStatus
from tickets.demo import DEMO_TAG
from tickets.models import Team, Ticket

HISTORY_TICKETS = 24
FAIL_EVERY = 6  # one Bedrock call in six failed (throttled) and fell back to local
SYNC_FAILED = (2, 9)  # positions whose ticketing sync became a dead letter
DEMO_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
DEMO = "Demo history"


class DemoBedrockHistory:
    """Stands in for the Bedrock provider in the demo history (no AWS call is made)."""

    name = "bedrock"

    def __init__(self, position: int) -> None:
        self.position = position

    def decide(self, ctx: TicketContext) -> ProviderResult:
        if self.position % FAIL_EVERY == FAIL_EVERY - 1:
            raise ProviderUnavailable(
                f"{DEMO}: Bedrock answered ThrottlingException (rate exceeded) after 3 attempts"
            )
        result = LocalProvider().decide(ctx)
        result.provider = self.name
        result.model_id = DEMO_MODEL
        result.tokens_in = 1400 + 37 * self.position
        result.tokens_out = 120 + 9 * self.position
        result.cost_usd = cost_usd(DEMO_MODEL, result.tokens_in, result.tokens_out)
        if self.position % 4 == 3:  # the model was less sure: a person reviews these
            result.decision.confidence = min(result.decision.confidence, 0.45)
        result.decision.reasoning = f"{DEMO}: {result.decision.reasoning}"
        return result


def load_demo_routing(progress: Callable[[str], None] = print) -> None:
    tickets = list(Ticket.objects.filter(tags__name=DEMO_TAG).order_by("pk")[:HISTORY_TICKETS])
    if not tickets:
        return
    agent = get_user_model().objects.filter(username="agent1").first()
    teams = list(Team.objects.order_by("slug"))
    decisions = []
    for position, ticket in enumerate(tickets):
        decisions.append(
            services.routing_decide(ticket_id=ticket.pk, provider=DemoBedrockHistory(position))
        )
    # the history's decisions (made now, or by an earlier load) are marked as demo data
    RoutingDecision.objects.filter(pk__in=[d.pk for d in decisions], demo=False).update(demo=True)
    judged = 0
    for position, decision in enumerate(decisions):
        if decision.feedback.exists() or position % 3 == 2:
            continue
        with transaction.atomic():
            if position % 3 == 0:
                services.routing_decision_accept(decision=decision, actor=agent)
            else:
                other = [t for t in teams if t.pk != decision.team_id]
                services.routing_decision_override(
                    decision=decision,
                    actor=agent,
                    team=other[position % len(other)] if other and position % 2 else decision.team,
                    priority=decision.priority,
                    note=f"{DEMO}: corrected by an agent",
                )
        judged += 1
    synced = sum(_sync_failed(decisions[p]) for p in SYNC_FAILED if p < len(decisions))
    progress(
        f"routing demo history: {len(decisions)} decisions, {judged} new verdicts, "
        f"{synced} failed syncs"
    )


def _sync_failed(decision: RoutingDecision) -> int:
    """Record the decision's sync as three refused attempts and a dead letter."""
    key = services.ticketing_sync_key(decision.pk)
    if Delivery.objects.filter(target_kind=services.TICKETING_SYNC_KIND, idempotency_key=key):
        return 0
    error = f"{DEMO}: connection refused by the ticketing system"
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.create(
            target_kind=services.TICKETING_SYNC_KIND,
            target_key="ticketing.example.com",
            idempotency_key=key,
            subject_type="ticket",
            subject_id=str(decision.ticket_id),
            payload=services.ticketing_sync_payload(decision),
            status=DeliveryStatus.DEAD,
            attempts=3,
            total_attempts=3,
            last_error=error,
            error_code="demo_history",
            completed_at=now,
        )
        for number in (1, 2, 3):
            Attempt.objects.create(
                delivery=delivery,
                number=number,
                outcome=Outcome.RETRYABLE,
                duration_ms=3,
                error=error,
                error_code="demo_history",
            )
        RoutingDecision.objects.filter(pk=decision.pk).update(sync_status=SyncStatus.FAILED)
    return 1
