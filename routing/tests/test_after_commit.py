"""What happens after a routing decision commits is no routing failure: the broker
refusing the ticketing sync's attempt task leaves the sync to the delivery sweep, and an
error raised after the decision is stored is not recorded against the routed ticket."""

from __future__ import annotations

from typing import Any
from unittest import mock

import kombu.exceptions
import pytest
import responses
from django.db import OperationalError

from routing import selectors, services, tasks
from routing.models import RoutingDecision, RoutingFailure
from support.delivery import services as engine
from support.delivery import tasks as delivery_tasks
from support.delivery.models import Delivery
from tickets import services as ticket_services
from tickets.models import Customer

URL = "https://tickets.example.test/api/routing"


def _failed_tickets() -> float:
    from routing.metrics import routing_metrics

    family = next(m for m in routing_metrics() if m.name == "support_routing_failed_tickets")
    return sum(sample.value for sample in family.samples)


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_a_broker_refusing_the_sync_after_the_decision_committed_is_no_failure(
    routing_on: Any, teams: Any, customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    """The sync's attempt task is published after the decision's commit. A broker error
    there escaped: the routing task failed, a ``RoutingFailure`` was recorded on a ticket
    that was routed (counted in ``support_routing_failed_tickets`` and listed in the admin
    for ever) and the callbacks registered after it never ran."""
    routing_on.TICKETING_SYSTEM_URL = URL
    routing_on.TICKETING_SYSTEM_TOKEN = "tok"
    with mock.patch("support.events.schedule_relay"):  # the task below routes it, not the relay
        ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    refused = kombu.exceptions.OperationalError("Error 111 connecting to redis:6379")
    with (
        mock.patch("support.events.schedule_relay") as relay,
        mock.patch.object(
            delivery_tasks.delivery_attempt_task, "apply_async", side_effect=refused
        ) as publish,
    ):
        result = tasks.route_ticket_task.apply(args=(ticket.pk,), throw=False)
    assert result.successful(), result.traceback
    decision = RoutingDecision.objects.get(ticket=ticket)
    assert result.result == decision.pk
    assert publish.call_count == 1
    assert relay.call_count >= 1  # the decision's event relay, registered after the sync, ran
    assert not RoutingFailure.objects.exists()
    assert _failed_tickets() == 0
    assert "the delivery sweep sends it" in caplog.text
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.status, delivery.attempts) == (
        "ticketing_sync",
        "pending",
        0,
    )
    # the broker is back: the delivery sweep sends the sync, once
    sync = responses.post(URL, json={"ok": True})
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert engine.deliveries_sweep(grace_seconds=0) == 1
    assert len(sync.calls) == 1
    decision.refresh_from_db()
    assert decision.sync_status == "success"
    assert selectors.routing_status_get(ticket=ticket, decided=True).status == "decided"


@pytest.mark.django_db
def test_an_error_after_the_decision_is_not_recorded_as_a_routing_failure(
    customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="Twice")
    RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.9,
        provider="local",
        correlation_id=ticket.correlation_id,
    )
    exc = OperationalError("an after-commit callback raised")
    assert services.routing_failure_record(ticket_id=ticket.pk, exc=exc) is None
    assert not RoutingFailure.objects.exists()
    assert "after its decision was stored" in caplog.text
    # a ticket without a decision is recorded as before
    other = ticket_services.ticket_create(customer=customer, subject="Other", body="Twice")
    failure = services.routing_failure_record(ticket_id=other.pk, exc=exc)
    assert failure is not None
    assert (failure.ticket_id, failure.attempts, failure.permanent) == (other.pk, 1, False)
