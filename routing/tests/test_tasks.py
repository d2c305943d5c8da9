"""The routing task's retries and the routing sweep ("never unrouted", docs/routing.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, OperationalError
from django.utils import timezone

from routing import selectors, services, tasks
from routing.artifacts import ArtifactError
from routing.metrics import routing_metrics
from routing.models import RoutingDecision
from support.errors import (
    ExternalAuthError,
    InvalidInput,
    NotFound,
    PermanentError,
    RetryableError,
)
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


def _sweeps(times: int) -> list[int]:
    return [tasks.routing_sweep_task.apply().get() for _ in range(times)]


def test_a_permanent_failure_is_recorded_once_and_left_by_the_sweep(
    routing_on: Any,
    teams: Any,
    customer: Customer,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A ticket whose own data cannot be routed (here the database refuses it) was sent
    again by every sweep, every 2 minutes for a day (720 tries). It is recorded once, the
    sweep leaves it, and staff can send it again from the admin."""
    monkeypatch.setitem(tasks.route_ticket_task.app.conf, "task_eager_propagates", False)
    ticket = _aged(customer, minutes=10)
    real = services.routing_decide
    calls: list[int] = []

    def refused(**kwargs: Any) -> RoutingDecision:
        calls.append(kwargs["ticket_id"])
        raise DataError("value too long for type character varying(64)")

    monkeypatch.setattr(services, "routing_decide", refused)
    assert _sweeps(4) == [1, 0, 0, 0]
    assert calls == [ticket.pk]  # not retried by the task either

    from routing.models import RoutingFailure

    failure = RoutingFailure.objects.get()
    assert (failure.ticket_id, failure.permanent, failure.attempts) == (ticket.pk, True, 1)
    assert failure.next_attempt_at is None
    assert failure.error == "DataError: value too long for type character varying(64)"
    # still a ticket without a decision: the metric counts it until a person acts
    unrouted = next(m for m in routing_metrics() if m.name == "support_routing_unrouted_tickets")
    assert [s.value for s in unrouted.samples] == [1]
    assert _failed_tickets() == {"permanent": 1, "retrying": 0}  # and says it needs a person
    # a later failure (a re-drive that fails again) does not change the record
    assert services.routing_failure_record(ticket_id=ticket.pk, exc=OperationalError("x"))
    failure.refresh_from_db()
    assert (failure.permanent, failure.attempts) == (True, 1)

    monkeypatch.setattr(services, "routing_decide", real)  # fixed: the admin's re-drive
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            services.routing_failure_redrive(failures=RoutingFailure.objects.all(), actor=None) == 1
        )
    assert RoutingDecision.objects.filter(ticket=ticket).count() == 1
    assert not RoutingFailure.objects.exists()
    assert _failed_tickets() == {"permanent": 0, "retrying": 0}


def _failed_tickets() -> dict[str, float]:
    family = next(m for m in routing_metrics() if m.name == "support_routing_failed_tickets")
    return {s.labels["kind"]: s.value for s in family.samples}


def test_a_transient_failure_is_swept_again_after_a_growing_backoff(
    routing_on: Any, teams: Any, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(tasks.route_ticket_task.app.conf, "task_eager_propagates", False)
    ticket = _aged(customer, minutes=10)
    real = services.routing_decide
    calls: list[int] = []

    def down(**kwargs: Any) -> RoutingDecision:
        calls.append(kwargs["ticket_id"])
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "routing_decide", down)
    assert _sweeps(3) == [1, 0, 0]  # backing off: not at the next sweeps
    assert len(calls) == 4  # the task's first try and its 3 retries

    from routing.models import RoutingFailure

    failure = RoutingFailure.objects.get()
    assert (failure.ticket_id, failure.permanent, failure.attempts) == (ticket.pk, False, 1)
    assert failure.error == "OperationalError: server closed the connection unexpectedly"
    assert _failed_tickets() == {"permanent": 0, "retrying": 1}
    interval = float(routing_on.ROUTING_SWEEP_SECONDS)
    assert failure.next_attempt_at is not None
    first_wait = (failure.next_attempt_at - failure.updated_at).total_seconds()
    assert 0.8 * interval <= first_wait <= 1.2 * interval + 1

    RoutingFailure.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert _sweeps(2) == [1, 0]
    assert len(calls) == 8
    failure.refresh_from_db()
    assert (failure.permanent, failure.attempts) == (False, 2)
    second_wait = (failure.next_attempt_at - failure.updated_at).total_seconds()
    assert 0.8 * 2 * interval <= second_wait <= 1.2 * 2 * interval + 1

    monkeypatch.setattr(services, "routing_decide", real)  # the outage is over
    RoutingFailure.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert _sweeps(2) == [1, 0]
    assert RoutingDecision.objects.filter(ticket=ticket).count() == 1
    assert not RoutingFailure.objects.exists()  # routed: the record goes


def test_a_transient_failure_older_than_the_lookback_is_still_swept_and_counted(
    routing_on: Any, teams: Any, customer: Customer
) -> None:
    """A ticket whose routing failed for a passing reason (or a deployment's: a refused
    credential fixed after a weekend) is swept again after the day the sweep looks back,
    with the same backoff: ``support_routing_failed_tickets{kind="retrying"}`` said so
    while the sweep had stopped trying and ``unrouted`` read 0. A permanent failure, and a
    ticket past the look-back that never failed (it predates routing), stay left alone."""
    from routing.models import RoutingFailure

    retrying, permanent, ancient = (
        Ticket.objects.get(pk=_aged(customer, minutes=60 * 25).pk) for _ in range(3)
    )
    services.routing_failure_record(ticket_id=retrying.pk, exc=ExternalAuthError("AccessDenied"))
    services.routing_failure_record(ticket_id=permanent.pk, exc=DataError("value too long"))
    assert _failed_tickets() == {"permanent": 1, "retrying": 1}
    assert _unrouted() == 1  # the retrying one: the sweep's work; not the permanent one

    assert _sweeps(1) == [0]  # still backing off
    where = selectors.routing_status_get(ticket=retrying, decided=False)
    assert where.status == selectors.RoutingState.PENDING
    assert "it is tried again from" in (where.reason or "")

    RoutingFailure.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert _sweeps(2) == [1, 0]  # the credential was fixed: routed
    assert list(RoutingDecision.objects.values_list("ticket_id", flat=True)) == [retrying.pk]
    assert list(RoutingFailure.objects.values_list("ticket_id", flat=True)) == [permanent.pk]
    assert _failed_tickets() == {"permanent": 1, "retrying": 0}
    assert _unrouted() == 0
    assert selectors.routing_status_get(ticket=ancient, decided=False).status == (
        selectors.RoutingState.NOT_ROUTED
    )


def _unrouted() -> float:
    family = next(m for m in routing_metrics() if m.name == "support_routing_unrouted_tickets")
    [sample] = family.samples
    return sample.value


def test_the_sweeps_backoff_doubles_up_to_an_hour(customer: Customer, settings: Any) -> None:
    settings.ROUTING_SWEEP_SECONDS = 120.0
    ticket = _aged(customer, minutes=10)
    now = timezone.now()
    waits, attempts = [], []
    for _ in range(8):
        failure = services.routing_failure_record(
            ticket_id=ticket.pk, exc=RetryableError("throttled"), now=now
        )
        assert failure is not None
        assert failure.next_attempt_at is not None
        waits.append((failure.next_attempt_at - now).total_seconds())
        attempts.append(failure.attempts)
    expected = [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert all(0.8 * e <= w <= 1.2 * e for w, e in zip(waits, expected, strict=True)), waits
    assert attempts == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (DataError("value too long"), True),  # the database refuses the ticket's data
        (InvalidInput("bad"), True),
        (NotFound("No ticket 1."), True),
        (PermanentError("refused for good"), True),
        # the deployment's configuration, fixed for every ticket at once: keep sweeping
        (ArtifactError("signed with another key"), False),
        (ExternalAuthError("AccessDenied"), False),
        (OperationalError("down"), False),
        (RetryableError("503"), False),
        (TypeError("a bug"), False),  # not known to be the ticket's: fixed by a release
    ],
)
def test_which_failures_are_permanent(exc: BaseException, permanent: bool) -> None:
    assert services.routing_failure_is_permanent(exc) is permanent


def test_a_failure_on_a_deleted_ticket_records_nothing() -> None:
    assert services.routing_failure_record(ticket_id=10**9, exc=DataError("x")) is None


def test_an_erasure_redacts_a_failures_error(customer: Customer, supervisor: Any) -> None:
    """An error message may quote the ticket's data: the customer's erasure reaches it."""
    from routing.models import RoutingFailure
    from tickets.context import privacy

    ticket = _aged(customer, minutes=10)
    services.routing_failure_record(
        ticket_id=ticket.pk, exc=InvalidInput("No text from Ada Lovelace")
    )
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    error = RoutingFailure.objects.get(ticket=ticket).error
    assert error == "InvalidInput: No text from [redacted]"
    assert "Ada" not in error
    assert "Lovelace" not in error
