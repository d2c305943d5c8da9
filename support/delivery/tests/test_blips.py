"""Nothing sent twice, nothing stuck, when the database or the broker blips around an
attempt: the outcome of a send the target took is recorded once the database answers
again (within the lease), and a task the broker refuses is left to the sweep without
failing the caller whose write committed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import kombu.exceptions
import pytest
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from support.delivery import services as engine
from support.delivery import tasks
from support.delivery.models import Circuit, Delivery, Outcome
from support.delivery.registry import SendResult, target_kind_get
from support.delivery.tests.conftest import KIND, ScriptedTarget, enqueue

pytestmark = pytest.mark.django_db

BROKER_DOWN = kombu.exceptions.OperationalError("Error 111 connecting to redis:6379")


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise BROKER_DOWN


def log(delivery: Delivery) -> list[tuple[int, str]]:
    return list(delivery.attempt_log.values_list("number", "outcome"))


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


class FakeClock:
    """Stands in for the engine's ``time`` module: ``sleep`` moves ``monotonic`` on at
    once (no test waits) and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(engine, "time", fake)
    return fake


def _lease_runs_out_and_the_sweep_runs(delivery: Delivery) -> int:
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=ago(1), next_attempt_at=ago(600))
    return engine.deliveries_sweep(grace_seconds=0)


# --- the database away while the outcome is recorded ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_before_the_record_is_retried_and_sent_once(
    target: ScriptedTarget, clock: FakeClock
) -> None:
    """The target took the request; the worker's database connection is then cut (a
    failover, a restart). The record used to raise: the delivery stayed leased and
    unrecorded and the sweep sent it again after the lease (a reply twice)."""

    def cut_my_connection(delivery: Delivery) -> None:
        pid = connection.connection.info.backend_pid
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            other.close()

    target.during_send = cut_my_connection
    delivery = enqueue()  # autocommit: the eager attempt task runs at once
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_owner, log(delivery)) == (
        "succeeded",
        "",
        [(1, "success")],
    )
    assert len(clock.slept) == 1
    assert 0.4 <= clock.slept[0] <= 0.6
    assert _lease_runs_out_and_the_sweep_runs(delivery) == 0
    assert target.sent == ["k-1"]
    assert Delivery.objects.get().possible_duplicate is False


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_while_recording_is_retried_within_the_lease(
    target: ScriptedTarget, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error inside the record's transaction (a deadlock, a serialization failure)
    rolls it back whole; the next try records everything once (one attempt row, the
    circuit counted once)."""
    target.script = [SendResult(http_status=503, error="busy")]
    real = engine._circuit_record
    calls: list[str] = []

    def deadlocked_once(*args: Any, **kwargs: Any) -> None:
        calls.append("circuit")
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        real(*args, **kwargs)

    monkeypatch.setattr(engine, "_circuit_record", deadlocked_once)
    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", lambda *a, **k: None)
    delivery = enqueue()
    report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (report.outcome, report.status, report.number) == ("retryable", "retrying", 1)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.lease_owner) == ("retrying", 1, "")
    assert log(delivery) == [(1, "retryable")]
    assert Circuit.objects.get().consecutive_failures == 1
    assert (len(calls), len(clock.slept), target.sent) == (2, 1, ["k-1"])


@pytest.mark.django_db(transaction=True)
def test_recording_gives_up_at_half_the_lease_and_the_sweep_takes_over(
    target: ScriptedTarget,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database stays away: the worker stops trying while half of what was left of
    the lease remains (another worker never finds it free while this one tries), logs an
    error and raises; the sweep takes it after the lease, as for a worker that died."""

    def away(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(engine, "_circuit_record", away)
    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", lambda *a, **k: None)
    delivery = enqueue()
    with pytest.raises(OperationalError):
        engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    lease = float(engine.settings.DELIVERY_LEASE_SECONDS)
    assert len(clock.slept) >= 5
    assert sum(clock.slept) <= lease / 2
    assert max(clock.slept) <= engine.RECORD_RETRY_CAP * 1.2
    assert "could not be recorded after" in caplog.text
    delivery.refresh_from_db()
    assert (delivery.status, log(delivery)) == ("pending", [])
    assert delivery.lease_until is not None
    assert delivery.lease_until > timezone.now()
    monkeypatch.undo()
    assert _lease_runs_out_and_the_sweep_runs(delivery) == 1
    delivery.refresh_from_db()
    assert log(delivery) == [(1, "lost"), (2, "success")]
    assert delivery.possible_duplicate is True


def test_recording_the_same_claim_twice_changes_nothing(target: ScriptedTarget) -> None:
    """A try whose commit went through before an error reached the worker (a callback
    after the commit raised): the next try finds the attempt recorded under its claim."""
    delivery = enqueue()
    claim = engine._claim(delivery.pk, None)
    assert claim is not None
    kind = target_kind_get(KIND)
    assert kind is not None
    fail = SendResult(http_status=503, error="busy")
    first = engine._record(claim, kind, Outcome.RETRYABLE, fail, None, 5)
    again = engine._record(claim, kind, Outcome.RETRYABLE, fail, None, 5)
    assert (first.status, again.status, again.number) == ("retrying", "retrying", 1)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, log(delivery)) == (
        "retrying",
        1,
        [(1, "retryable")],
    )
    assert Circuit.objects.get().consecutive_failures == 1  # counted once
    assert target.changes == [("k-1", "retrying")]


# --- the broker refusing an attempt task -----------------------------------------------------


def test_a_broker_refusing_the_first_attempt_fails_nothing_and_the_sweep_sends_it(
    target: ScriptedTarget,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The publish after commit used to raise: a committed HTTP write answered 500, and
    the callbacks registered after it (an event's relay, another app's task) never ran."""

    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", _refuse)
    after: list[str] = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        delivery = enqueue()
        transaction.on_commit(lambda: after.append("ran"))
    assert after == ["ran"]
    assert "the delivery sweep sends it" in caplog.text
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, target.sent) == ("pending", 0, [])
    monkeypatch.undo()
    Delivery.objects.filter(pk=delivery.pk).update(created_at=ago(60), next_attempt_at=ago(60))
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep(grace_seconds=0) == 1
    assert target.sent == ["k-1"]
    assert Delivery.objects.get().status == "succeeded"


def test_a_broker_refusing_a_retry_leaves_it_to_the_sweep(
    target: ScriptedTarget, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target.script = [SendResult(http_status=503, error="busy")]
    delivery = enqueue()
    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", _refuse)
    with django_capture_on_commit_callbacks(execute=True):
        report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (report.outcome, report.status) == ("retryable", "retrying")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_owner, log(delivery)) == (
        "retrying",
        "",
        [(1, "retryable")],
    )
    monkeypatch.undo()
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(60))
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep(grace_seconds=0) == 1
    assert target.sent == ["k-1", "k-1"]
    assert Delivery.objects.get().status == "succeeded"


def test_the_sweep_stops_at_a_broker_refusal_and_leaves_the_rest(
    target: ScriptedTarget, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = enqueue("a"), enqueue("b")
    Delivery.objects.update(next_attempt_at=ago(300))
    refused: list[int] = []

    def refuse(args: Any = None, **kwargs: Any) -> None:
        refused.append(args[0])
        raise BROKER_DOWN

    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", refuse)
    assert engine.deliveries_sweep(grace_seconds=0) == 0
    assert refused == [first.pk]  # one refusal ends the run
    second.refresh_from_db()
    assert second.next_attempt_at is not None
    assert second.next_attempt_at < ago(200)
    assert "could not be queued" in caplog.text
