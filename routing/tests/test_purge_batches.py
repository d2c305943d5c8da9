"""The hourly decision purge (``routing.services.routing_decision_purge``) works a backlog
off in bounded batches, each in a transaction of its own, and deletes the decisions by id
without loading them (their tool trace is the bulk of a row)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing import services
from routing.models import RoutingDecision, RoutingFeedback
from tickets import services as ticket_services

pytestmark = pytest.mark.django_db


def _decisions(customer, agent, teams, n: int) -> list[RoutingDecision]:
    found = []
    for i in range(n):
        ticket = ticket_services.ticket_create(
            customer=customer, subject=f"Refund {i}", body="refund please"
        )
        decision = services.routing_decide(ticket_id=ticket.pk)
        services.routing_decision_accept(decision=decision, actor=agent)
        services.routing_decision_override(  # judged twice: the override is the latest
            decision=decision,
            actor=agent,
            team=teams["billing"],
            priority="high",
            category="REFUND",
            intent="get_refund",
        )
        found.append(decision)
    return found


def test_a_backlog_goes_in_bounded_batches_keeping_the_latest_verdicts(
    routing_on, teams, customer, agent
) -> None:
    expired = _decisions(customer, agent, teams, 5)
    (fresh,) = _decisions(customer, agent, teams, 1)
    RoutingDecision.objects.filter(pk__in=[d.pk for d in expired]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    latest = {d.pk: RoutingFeedback.objects.filter(decision=d).latest("id").pk for d in expired}

    with CaptureQueriesContext(connection) as captured:
        assert services.routing_decision_purge(batch=2, max_batches=2) == 4

    statements = [q["sql"] for q in captured.captured_queries]
    deletes = [s for s in statements if s.startswith('DELETE FROM "routing_routingdecision"')]
    assert len(deletes) == 2  # one per batch, each in its own (short) transaction
    # deleted by id: no decision row (its tool trace) is read into memory
    assert not [s for s in statements if '"routing_routingdecision"."tool_calls"' in s]

    purged, left = [d.pk for d in expired[:4]], expired[4].pk
    assert sorted(RoutingDecision.objects.values_list("pk", flat=True)) == sorted([left, fresh.pk])
    # each purged decision's latest verdict stays, emptied; the earlier one went with it
    kept = RoutingFeedback.objects.filter(pk__in=[latest[pk] for pk in purged])
    assert list(kept.values_list("decision_id", flat=True)) == [None] * 4
    assert RoutingFeedback.objects.filter(decision__isnull=True).count() == 4
    assert RoutingFeedback.objects.filter(decision_id=left).count() == 2  # not reached yet

    assert services.routing_decision_purge(batch=2, max_batches=2) == 1  # the next run
    assert sorted(RoutingDecision.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert RoutingFeedback.objects.filter(decision__isnull=True).count() == 5
    assert services.routing_decision_purge(batch=2, max_batches=2) == 0
