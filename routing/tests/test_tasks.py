"""The routing task's retries and the routing sweep ("never unrouted", docs/routing.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from routing import selectors, services, tasks
from routing.metrics import routing_metrics
from routing.models import RoutingDecision
from support.errors import NotFound
from tickets import services as ticket_services
from tickets.models import Customer, Ticket

pytestmark = pytest.mark.django_db


def _aged(customer: Customer, *, minutes: float, subject: str = "Refund please") -> Ticket:
    ticket = ticket_services.ticket_create(customer=customer, subject=subject, body="Charged twice")
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )
    return ticket


def test_a_transient_database_error_is_retried(
    routing_on: Any, teams: Any, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="Twice")
    real = services.routing_decide
    calls: list[int] = []

    def flaky(**kwargs: Any) -> RoutingDecision:
        calls.append(kwargs["ticket_id"])
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(services, "routing_decide", flaky)
    result = tasks.route_ticket_task.apply(args=(ticket.pk,), throw=False)  # runs retries
    assert result.successful(), result.traceback
    assert calls == [ticket.pk, ticket.pk]
    assert RoutingDecision.objects.filter(ticket=ticket).count() == 1


def test_retries_are_bounded_and_a_missing_ticket_is_not_retried(
    routing_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def down(**kwargs: Any) -> RoutingDecision:
        calls.append(kwargs["ticket_id"])
        raise OperationalError("down")

    monkeypatch.setattr(services, "routing_decide", down)
    # Eager retries re-apply with the app's propagate setting: off, to count them all.
    monkeypatch.setitem(tasks.route_ticket_task.app.conf, "task_eager_propagates", False)
    result = tasks.route_ticket_task.apply(args=(1,), throw=False)
    assert isinstance(result.result, OperationalError)
    assert len(calls) == 4  # the first try and 3 retries
    calls.clear()

    def gone(**kwargs: Any) -> RoutingDecision:
        calls.append(kwargs["ticket_id"])
        raise NotFound("No ticket 1.")

    monkeypatch.setattr(services, "routing_decide", gone)
    result = tasks.route_ticket_task.apply(args=(1,), throw=False)
    assert isinstance(result.result, NotFound)
    assert calls == [1]


def test_the_sweep_routes_tickets_left_without_a_decision(
    routing_on: Any, teams: Any, customer: Customer, settings: Any
) -> None:
    settings.ROUTING_SWEEP_BATCH = 2
    lost = [_aged(customer, minutes=10 + i) for i in range(3)]  # oldest: lost[2]
    fresh = _aged(customer, minutes=1)  # its own task may still be on its way
    ancient = _aged(customer, minutes=60 * 25)  # before the lookback: left alone
    routed = _aged(customer, minutes=30)
    services.routing_decide(ticket_id=routed.pk)

    assert list(selectors.tickets_unrouted().values_list("pk", flat=True)) == [
        lost[2].pk,
        lost[1].pk,
        lost[0].pk,
    ]
    unrouted = next(m for m in routing_metrics() if m.name == "support_routing_unrouted_tickets")
    assert [s.value for s in unrouted.samples] == [3]

    assert tasks.routing_sweep_task.apply().get() == 2  # the batch bound, oldest first
    assert set(RoutingDecision.objects.values_list("ticket_id", flat=True)) == {
        routed.pk,
        lost[2].pk,
        lost[1].pk,
    }
    assert tasks.routing_sweep_task.apply().get() == 1
    assert tasks.routing_sweep_task.apply().get() == 0
    assert not RoutingDecision.objects.filter(ticket__in=[fresh, ancient]).exists()
    assert RoutingDecision.objects.count() == 4  # one each: nothing routed twice


def test_the_sweep_and_the_metric_are_quiet_while_routing_is_off(
    customer: Customer, settings: Any
) -> None:
    settings.ROUTING_ENABLED = False
    _aged(customer, minutes=10)
    assert tasks.routing_sweep_task.apply().get() == 0
    unrouted = next(m for m in routing_metrics() if m.name == "support_routing_unrouted_tickets")
    assert [s.value for s in unrouted.samples] == [0]


def test_the_sweep_is_on_the_beat(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["routing-sweep"]
    assert entry["task"] == "routing.tasks.routing_sweep_task"
