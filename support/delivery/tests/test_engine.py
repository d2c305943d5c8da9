"""The delivery engine against a scripted target: claims and leases, no lock or transaction
held while sending, the schedule and Retry-After, dead letters and re-drive, the sweep,
circuit breaking. Real PostgreSQL; eager Celery runs what a commit enqueues."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone

from support.delivery import selectors
from support.delivery import services as engine
from support.delivery.models import Attempt, Circuit, Delivery, Outcome
from support.delivery.registry import (
    DeliveryError,
    Schedule,
    SendResult,
    classify_http,
    target_kind_get,
    target_kind_register,
    target_kind_unregister,
)
from support.delivery.tests.conftest import KIND, ScriptedTarget, enqueue
from support.errors import PendingError, PermanentError, RetryableError
from support.models import AuditLog

pytestmark = pytest.mark.django_db

FAIL = SendResult(http_status=503, error="busy")


def log(delivery: Delivery) -> list[tuple[int, str]]:
    return list(delivery.attempt_log.values_list("number", "outcome"))


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


# --- schedules and classification ----------------------------------------------------------


def test_seed_004_schedule_and_exponential_backoff() -> None:
    ticketing = Schedule(max_attempts=6, delays=(1, 2, 4, 8, 16), jitter=False)
    assert [ticketing.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 16]
    exponential = Schedule(max_attempts=9, base=2, cap=10, jitter=False)
    assert [exponential.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    jittered = Schedule(max_attempts=9, base=10, cap=100)
    assert all(8 <= jittered.delay(1) <= 12 for _ in range(50))


def test_retry_after_wins_when_longer_up_to_its_cap(settings: Any) -> None:
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 300
    schedule = Schedule(max_attempts=3, delays=(10,), jitter=False)
    assert schedule.delay(1, retry_after=2) == 10
    assert schedule.delay(1, retry_after=120) == 120
    assert schedule.delay(1, retry_after=100_000) == 300


def test_http_classification() -> None:
    assert [classify_http(s) for s in (None, 200, 204, 429, 401, 408, 425, 500, 503)] == [
        "success",
        "success",
        "success",
        "throttled",
        "auth",
        "retryable",
        "retryable",
        "retryable",
        "retryable",
    ]
    assert [classify_http(s) for s in (300, 400, 403, 404, 409, 422)] == ["permanent"] * 6


# --- enqueue, attempt, record --------------------------------------------------------------


def test_enqueue_is_idempotent_and_sends_once_after_commit(
    target: ScriptedTarget, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = enqueue()
        second = enqueue()
        assert target.sent == []  # nothing leaves before the commit
    assert first.pk == second.pk
    assert target.sent == ["k-1"]
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.total_attempts) == ("succeeded", 1, 1)
    assert (delivery.lease_owner, delivery.lease_until, delivery.next_attempt_at) == (
        "",
        None,
        None,
    )
    assert log(delivery) == [(1, "success")]
    assert target.changes == [("k-1", "succeeded")]


def test_enqueueing_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="No delivery target kind"):
        engine.delivery_enqueue(kind="nope", idempotency_key="x")


def test_retries_follow_the_schedule_then_a_dead_letter(target: ScriptedTarget) -> None:
    target.script = [FAIL, FAIL, FAIL]
    delivery = enqueue()  # the test's transaction never commits: we drive each attempt
    first = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (first.outcome, first.status, first.next_attempt_in) == ("retryable", "retrying", 10)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=9)
    assert not engine.delivery_attempt(delivery_id=delivery.pk).claimed  # not due yet
    second = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=1)
    assert second.next_attempt_in == 20
    third = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=2)
    assert (third.outcome, third.status, third.next_attempt_in) == ("retryable", "dead", None)
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_http_status, delivery.error_code) == (
        3,
        503,
        "http_503",
    )
    assert delivery.last_error == "busy"
    assert log(delivery) == [(1, "retryable"), (2, "retryable"), (3, "retryable")]
    assert target.changes == [("k-1", "retrying"), ("k-1", "retrying"), ("k-1", "dead")]


def test_a_permanent_answer_is_a_dead_letter_at_once(target: ScriptedTarget) -> None:
    target.script = [SendResult(http_status=422, error="bad field")]
    delivery = enqueue()
    assert engine.delivery_attempt(delivery_id=delivery.pk).status == "dead"
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.error_code, delivery.last_error) == (
        1,
        "http_422",
        "bad field",
    )


def test_classified_errors_and_the_shared_error_kinds(target: ScriptedTarget) -> None:
    limited = RetryableError("slow down", retry_after=30)
    limited.http_status = 429  # type: ignore[attr-defined]
    target.script = [
        DeliveryError("refused", outcome=Outcome.AUTH, http_status=401, error_code="auth_x"),
        limited,
        PermanentError("no such recipient"),
    ]
    target.max_attempts = 5
    delivery = enqueue()
    outcomes = []
    for n in range(3):
        Circuit.objects.all().delete()  # auth and Retry-After pause the target: not here
        outcomes.append(
            engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=n).outcome
        )
    assert outcomes == ["auth", "throttled", "permanent"]
    assert list(delivery.attempt_log.values_list("error_code", flat=True)) == [
        "auth_x",
        "http_429",
        "",
    ]


def test_an_unexpected_error_in_a_send_is_recorded_and_retried(target: ScriptedTarget) -> None:
    target.script = [ValueError("boom")]
    delivery = enqueue()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert (report.outcome, report.status) == ("retryable", "retrying")
    assert Attempt.objects.get().error == "ValueError: boom"


def test_retry_after_is_honoured_for_the_delivery_and_its_target(target: ScriptedTarget) -> None:
    target.script = [SendResult(http_status=429, retry_after=120)]
    delivery = enqueue()
    other = enqueue("k-2")
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert (report.outcome, report.next_attempt_in) == ("throttled", 120)
    circuit = Circuit.objects.get(target_kind=KIND, target_key="host-a")
    assert circuit.state == "open"
    assert circuit.open_until is not None
    assert circuit.open_until > timezone.now() + timedelta(seconds=119)
    paused = engine.delivery_attempt(delivery_id=other.pk)  # same target: held back too
    assert (paused.claimed, paused.paused_until) == (False, circuit.open_until)
    assert target.sent == ["k-1"]


def test_a_retry_that_would_arrive_after_expiry_is_a_dead_letter(target: ScriptedTarget) -> None:
    target.script = [FAIL, FAIL]
    delivery = enqueue(expires_at=timezone.now() + timedelta(seconds=15))
    assert engine.delivery_attempt(delivery_id=delivery.pk).status == "retrying"  # 10 s < 15 s
    second = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=1)
    assert second.status == "dead"  # 20 s would be too late


def test_an_expired_delivery_is_not_sent(target: ScriptedTarget) -> None:
    delivery = enqueue(expires_at=ago(1))
    assert engine.delivery_attempt(delivery_id=delivery.pk).status == "dead"
    delivery.refresh_from_db()
    assert (delivery.error_code, target.sent) == ("expired", [])


def test_a_delivery_of_a_kind_this_process_does_not_know_waits(target: ScriptedTarget) -> None:
    delivery = enqueue()
    target_kind_unregister(KIND)
    try:
        report = engine.delivery_attempt(delivery_id=delivery.pk)
    finally:
        target_kind_register(target.kind())
    assert (report.claimed, report.paused_until is not None) == (False, True)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.lease_owner) == ("pending", 0, "")
    assert target_kind_get(KIND) is not None


# --- no lock, no transaction while sending -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_transaction_or_lock_is_held_while_sending(target: ScriptedTarget) -> None:
    """The send runs with no transaction open, and another transaction can lock the
    delivery row (NOWAIT) while it is in flight."""
    seen: dict[str, Any] = {}

    def during_send(delivery: Delivery) -> None:
        seen["in_atomic_block"] = connection.in_atomic_block

        def other() -> None:
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute("BEGIN")
                    cursor.execute(
                        "SELECT lease_owner FROM delivery_delivery WHERE id = %s FOR UPDATE NOWAIT",
                        [delivery.pk],
                    )
                    seen["lease_owner_seen"] = cursor.fetchone()[0]
                    cursor.execute("ROLLBACK")
            except Exception as exc:
                seen["error"] = repr(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()

    target.during_send = during_send
    enqueue()  # autocommit: the eager attempt task runs right after the commit
    assert seen["in_atomic_block"] is False
    assert "error" not in seen, seen.get("error")
    assert seen["lease_owner_seen"].startswith(engine._PROCESS)  # leased, committed, unlocked
    assert Delivery.objects.get().status == "succeeded"


# --- leases ------------------------------------------------------------------------------


def test_a_leased_delivery_is_not_claimed_again(target: ScriptedTarget) -> None:
    delivery = enqueue()
    Delivery.objects.filter(pk=delivery.pk).update(
        lease_owner="worker-a", lease_until=timezone.now() + timedelta(seconds=60)
    )
    assert not engine.delivery_attempt(delivery_id=delivery.pk).claimed
    assert not engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0).claimed
    assert engine.deliveries_sweep(grace_seconds=0) == 0
    assert target.sent == []


def _died_mid_send(delivery: Delivery) -> None:
    """What a worker killed mid-call leaves: a claim (attempt 1) and an expired lease."""
    Delivery.objects.filter(pk=delivery.pk).update(
        lease_owner="worker-killed", lease_until=ago(1), attempts=1, total_attempts=1
    )


def test_an_expired_lease_is_reclaimed_and_the_lost_attempt_counted(
    target: ScriptedTarget, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = enqueue()
    _died_mid_send(delivery)
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep(grace_seconds=0) == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert log(delivery) == [(1, "lost"), (2, "success")]
    # The target cannot deduplicate: the first call may have arrived, so it is counted.
    assert delivery.possible_duplicate is True
    assert selectors.delivery_health()["possible_duplicates"] == 1
    assert target.sent == ["k-1"]


def test_a_target_that_deduplicates_is_not_counted_as_a_duplicate(
    target: ScriptedTarget,
) -> None:
    target.deduplicates = True
    delivery = enqueue()
    _died_mid_send(delivery)
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    delivery.refresh_from_db()
    assert (delivery.possible_duplicate, log(delivery)) == (False, [(1, "lost"), (2, "success")])


def test_nothing_is_sent_again_once_a_success_is_recorded(target: ScriptedTarget) -> None:
    delivery = enqueue()
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    # Whatever arrives later (duplicate task messages, a stale lease, the sweep) finds it done.
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=ago(3600), next_attempt_at=ago(60))
    for expected in (None, 0, 1):
        assert not engine.delivery_attempt(
            delivery_id=delivery.pk, expected_attempts=expected
        ).claimed
    assert engine.deliveries_sweep(grace_seconds=0) == 0
    assert target.sent == ["k-1"]


def test_a_hook_that_raises_does_not_undo_the_recorded_outcome(
    target: ScriptedTarget, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The kind's on_change hook (a reply's message status) raised after a successful send:
    the attempt's record rolled back with it, the lease expired, the delivery was sent
    again, and again, at every lease expiry."""

    def hook_fails(delivery: Delivery, change: Any) -> None:
        target.changes.append((delivery.idempotency_key, change.event))
        raise LookupError("the message was deleted meanwhile")

    monkeypatch.setattr(target, "on_change", hook_fails)
    target_kind_register(target.kind())
    delivery = enqueue()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert report.outcome == "success"
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert log(delivery) == [(1, "success")]
    assert "hook raised" in caplog.text
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=ago(3600), next_attempt_at=ago(60))
    assert engine.deliveries_sweep(grace_seconds=0) == 0
    assert target.sent == ["k-1"]


def test_a_worker_finishing_after_its_lease_was_taken_keeps_one_success(
    target: ScriptedTarget,
) -> None:
    """Worker A stalls past its lease; worker B takes the delivery and succeeds; A's late
    success changes nothing but the count of possible duplicates."""
    delivery = enqueue()
    claim_a = engine._claim(delivery.pk, None)
    assert claim_a is not None
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=ago(1))
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"  # worker B
    kind = target_kind_get(KIND)
    assert kind is not None
    late = engine._record(claim_a, kind, Outcome.SUCCESS, SendResult(http_status=200), None, 5)
    assert late.status == "succeeded"
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert log(delivery) == [(1, "success"), (2, "success")]
    assert delivery.possible_duplicate is True
    assert target.changes == [("k-1", "succeeded")]  # the domain heard of it once


# --- the sweep ---------------------------------------------------------------------------


def test_the_sweep_sends_never_enqueued_and_overdue_deliveries_only(
    target: ScriptedTarget, django_capture_on_commit_callbacks: Any
) -> None:
    enqueue("fresh")  # just created: its own task is about to run
    lost = enqueue("lost")
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=None, created_at=ago(300))
    overdue = enqueue("overdue")
    Delivery.objects.filter(pk=overdue.pk).update(status="retrying", next_attempt_at=ago(300))
    later = enqueue("later")
    Delivery.objects.filter(pk=later.pk).update(next_attempt_at=ago(-300))
    leased = enqueue("leased")
    Delivery.objects.filter(pk=leased.pk).update(
        next_attempt_at=ago(300), lease_owner="w", lease_until=ago(-60)
    )
    dead = enqueue("dead")
    Delivery.objects.filter(pk=dead.pk).update(status="dead", next_attempt_at=ago(300))
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deliveries_sweep() == 2
    assert target.sent == ["lost", "overdue"]


def test_a_swept_delivery_waiting_in_a_backed_up_queue_is_not_queued_again(
    target: ScriptedTarget, monkeypatch: Any
) -> None:
    """The sweep queued another attempt task every run while the first one still waited in
    a backed-up queue (up to 3 copies per delivery seen in the soak)."""
    queued: list[tuple[int, int | None]] = []

    def enqueue_task(
        pk: int, kind: Any, *, expected_attempts: int | None, countdown: float = 0.0
    ) -> bool:
        queued.append((pk, expected_attempts))
        return True  # the broker took it

    monkeypatch.setattr(engine, "_enqueue", enqueue_task)
    lost = enqueue("lost")
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=ago(300))
    assert engine.deliveries_sweep(grace_seconds=0) == 1
    assert engine.deliveries_sweep(grace_seconds=0) == 0  # its task is still queued
    assert queued == [(lost.pk, 0)]
    # the queued task claims it by its attempt count although its next attempt moved ahead
    assert engine.delivery_attempt(delivery_id=lost.pk, expected_attempts=0).claimed
    assert target.sent == ["lost"]


def test_the_beat_runs_one_sweep_and_leases_outlive_the_attempt_task() -> None:
    from support.celery import app
    from support.delivery.tasks import ATTEMPT_TIME_LIMIT

    app.loader.import_default_modules()
    entry = django_settings.CELERY_BEAT_SCHEDULE["delivery-sweep"]
    assert entry["task"] == "support.delivery.tasks.delivery_sweep_task"
    assert entry["task"] in app.tasks
    assert "support.delivery.tasks.delivery_attempt_task" in app.tasks
    assert ATTEMPT_TIME_LIMIT < django_settings.DELIVERY_LEASE_SECONDS
    sweeps = [name for name in django_settings.CELERY_BEAT_SCHEDULE if "sweep" in name]
    # one delivery sweep for every kind; the others sweep inbound events, replies left with
    # no delivery at all, call events and call pipelines a lost task left, knowledge jobs
    # and S3 events a killed worker left, the outbox and tickets left unrouted, media
    # downloads nobody fetched, and satisfaction surveys whose task was lost
    assert sorted(sweeps) == [
        "calls-events-sweep",
        "calls-pipeline-sweep",
        "channels-inbound-sweep",
        "channels-media-sweep",
        "channels-outbound-sweep",
        "csat-surveys-sweep",
        "delivery-sweep",
        "kb-jobs-sweep",
        "kb-object-events-sweep",
        "outbox-relay-sweep",
        "routing-sweep",
    ]


# --- circuit breaking --------------------------------------------------------------------


def test_circuit_opens_after_n_failures_pauses_half_opens_and_closes(
    target: ScriptedTarget, settings: Any
) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 3
    settings.DELIVERY_CIRCUIT_COOLOFF_SECONDS = 60
    target.max_attempts = 10
    a, b, c, d = (enqueue(f"a-{n}") for n in range(4))
    elsewhere = enqueue("b-0", target_key="host-b")
    target.script = [FAIL, FAIL, FAIL]
    for delivery in (a, b, c):
        engine.delivery_attempt(delivery_id=delivery.pk)
    circuit = Circuit.objects.get(target_kind=KIND, target_key="host-a")
    assert (circuit.state, circuit.consecutive_failures, circuit.times_opened) == ("open", 3, 1)
    assert circuit.open_until is not None
    assert circuit.open_until > timezone.now() + timedelta(seconds=59)
    assert list(selectors.circuits_paused()) == [circuit]
    assert selectors.delivery_health()["circuits_open"] == 1

    # Paused: nothing goes to host-a, and the refusal is not an attempt.
    refused = engine.delivery_attempt(delivery_id=d.pk)
    assert (refused.claimed, refused.paused_until) == (False, circuit.open_until)
    d.refresh_from_db()
    assert (d.attempts, d.next_attempt_at, d.lease_owner) == (0, circuit.open_until, "")
    assert engine.delivery_attempt(delivery_id=elsewhere.pk).outcome == "success"
    Delivery.objects.filter(pk=a.pk).update(next_attempt_at=ago(300))
    assert engine.deliveries_sweep(grace_seconds=0) == 0  # the sweep skips paused targets
    assert target.sent == ["a-0", "a-1", "a-2", "b-0"]

    # Cool-off over: one delivery probes (half-open); the others wait for its answer.
    Circuit.objects.filter(pk=circuit.pk).update(open_until=ago(1))
    Delivery.objects.filter(pk__in=[a.pk, b.pk]).update(next_attempt_at=ago(1))
    during: dict[str, Any] = {}

    def probe(delivery: Delivery) -> None:
        during["state"] = Circuit.objects.get(pk=circuit.pk).state
        during["b"] = engine.delivery_attempt(delivery_id=b.pk)

    target.during_send = probe
    assert engine.delivery_attempt(delivery_id=a.pk).outcome == "success"
    target.during_send = None
    assert during["state"] == "half_open"
    assert during["b"].claimed is False
    assert during["b"].paused_until is not None
    circuit.refresh_from_db()
    assert (circuit.state, circuit.consecutive_failures, circuit.open_until) == ("closed", 0, None)
    assert selectors.delivery_health()["circuits_open"] == 0
    b.refresh_from_db()
    assert (
        engine.delivery_attempt(delivery_id=b.pk, expected_attempts=b.attempts).outcome == "success"
    )


def test_a_failed_probe_opens_the_circuit_again(target: ScriptedTarget, settings: Any) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 1
    target.max_attempts = 10
    delivery = enqueue()
    target.script = [FAIL, FAIL]
    engine.delivery_attempt(delivery_id=delivery.pk)
    Circuit.objects.update(open_until=ago(1))
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(1))
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "retryable"
    circuit = Circuit.objects.get()
    assert (circuit.state, circuit.times_opened) == ("open", 2)


def test_refused_credentials_pause_the_target_at_once(target: ScriptedTarget) -> None:
    target.script = [SendResult(http_status=401, error="token expired")]
    delivery = enqueue()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert (report.outcome, report.status) == ("auth", "retrying")
    circuit = Circuit.objects.get()
    assert (circuit.state, circuit.last_error) == ("open", "token expired")


def test_permanent_answers_do_not_open_the_circuit(target: ScriptedTarget, settings: Any) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 2
    target.script = [FAIL, SendResult(http_status=400), FAIL]
    for n in range(3):
        engine.delivery_attempt(delivery_id=enqueue(f"k-{n}").pk)
    circuit = Circuit.objects.get()
    assert (circuit.state, circuit.consecutive_failures) == ("closed", 1)


def test_a_target_still_working_uses_no_attempt_and_is_no_failure(
    target: ScriptedTarget, settings: Any
) -> None:
    """``PendingError`` (X processing an uploaded video): asked again after the wait the
    target gave, as many times as it takes (within the engine's cap), without using the
    kind's attempts, counting towards the target's circuit or the failure figures."""
    settings.DELIVERY_CIRCUIT_FAILURES = 2
    target.max_attempts = 2
    delivery = enqueue()
    target.script = [FAIL, *(PendingError("processing", retry_after=7.0) for _ in range(4))]
    first = engine.delivery_attempt(delivery_id=delivery.pk)
    assert first.outcome == "retryable"
    for _ in range(4):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(1))
        delivery.refresh_from_db()
        report = engine.delivery_attempt(
            delivery_id=delivery.pk, expected_attempts=delivery.attempts
        )
        assert (report.outcome, report.status) == ("pending", "retrying")
        assert report.next_attempt_in == 7.0  # the target's wait, not the kind's backoff
    delivery.refresh_from_db()
    # four waits after one failure: still one attempt used of two, five made
    assert (delivery.attempts, delivery.total_attempts) == (1, 5)
    assert delivery.error_code == ""
    assert delivery.last_error == "processing"
    # the target answered each time: its one failure was forgiven, no pause
    circuit = Circuit.objects.get()
    assert (circuit.state, circuit.consecutive_failures) == ("closed", 0)
    since = timezone.now() - timedelta(hours=1)
    assert selectors.failures_since(target_kind=KIND, since=since) == 1
    # then it is done: a success on the second of two attempts
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(1))
    assert engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=1).outcome == (
        "success"
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_target_pending_for_ever_ends_as_a_dead_letter(
    target: ScriptedTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PENDING_WAITS_MAX", 2)
    delivery = enqueue()
    target.script = [PendingError("processing") for _ in range(3)]
    for _ in range(3):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(1))
        report = engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
        assert report.outcome == "pending"
    assert report.status == "dead"
    delivery.refresh_from_db()
    assert delivery.last_error == "Still pending after 3 checks: processing"
    assert delivery.error_code == "pending_too_long"
    assert target.changes[-1] == ("k-1", "dead")


def test_closing_a_circuit_by_hand_resumes_its_deliveries(
    target: ScriptedTarget, settings: Any, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 1
    first, second = enqueue("k-1"), enqueue("k-2")
    target.script = [FAIL]
    engine.delivery_attempt(delivery_id=first.pk)
    assert engine.delivery_attempt(delivery_id=second.pk).paused_until is not None
    circuit = Circuit.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.circuit_close(circuit_ids=[circuit.pk], actor=supervisor) == 1
    assert Circuit.objects.get().state == "closed"
    # Both went at once: the paused one, and the retry that fell inside the pause.
    assert sorted(target.sent) == ["k-1", "k-1", "k-2"]
    entry = AuditLog.objects.get(action="delivery.circuit_closed")
    assert (entry.actor, entry.details["previous_state"]) == (supervisor, "open")


# --- dead letters and re-drive -----------------------------------------------------------


def test_dead_letters_are_redriven_single_and_bulk_each_delivered_once(
    target: ScriptedTarget, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    target.script = [SendResult(http_status=422)] * 3
    with django_capture_on_commit_callbacks(execute=True):
        one, two, three = (enqueue(f"k-{n}") for n in range(1, 4))
    assert set(Delivery.objects.values_list("status", flat=True)) == {"dead"}
    assert selectors.delivery_health()["dead_letters"] == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert engine.delivery_redrive(delivery_ids=[one.pk], actor=supervisor) == 1
    with django_capture_on_commit_callbacks(execute=True):
        count = engine.delivery_redrive(delivery_ids=[one.pk, two.pk, three.pk], actor=supervisor)
    assert count == 2  # the first one is no longer dead: left alone
    assert sorted(target.sent) == ["k-1", "k-1", "k-2", "k-2", "k-3", "k-3"]
    for delivery in (one, two, three):
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
        assert log(delivery) == [(1, "permanent"), (2, "success")]
    audits = AuditLog.objects.filter(action="delivery.redriven").order_by("id")
    assert [(a.actor, a.object_id) for a in audits] == [
        (supervisor, str(d.pk)) for d in (one, two, three)
    ]
    assert ("k-2", "redriven") in target.changes
    assert selectors.delivery_health()["dead_letters"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.delivery_redrive(delivery_ids=[one.pk], actor=supervisor) == 0
    assert len(target.sent) == 6


def test_the_attempt_task_goes_to_the_kinds_queue(monkeypatch: Any) -> None:
    from support.delivery import tasks

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.delivery_attempt_task, "apply_async", lambda args=None, **opts: seen.append(opts)
    )
    target_kind_register(replace(ScriptedTarget().kind(), queue=lambda: "realtime"))
    try:
        engine._enqueue(1, target_kind_get(KIND), expected_attempts=0, countdown=2.5)
    finally:
        target_kind_unregister(KIND)
    assert seen == [{"countdown": 2.5, "queue": "realtime"}]
