"""Writes of the delivery engine: enqueue, attempt, sweep, re-drive, circuit breaking.

One attempt is three steps, and no lock or transaction is held while the target is called:

1. **Claim** (a short transaction): one conditional ``UPDATE`` takes the lease
   (``lease_owner``, ``lease_until``) of a delivery that is open, due (or the attempt this
   task was scheduled for) and not leased by a live worker; the target's circuit is asked
   for admission. Commit.
2. **Send** with no transaction open: the target kind's ``send`` and ``classify``.
3. **Record** (a new short transaction): the attempt row, the delivery's new state (success,
   retry at a time from the kind's schedule, or dead letter), the circuit, the kind's
   ``on_change`` hook (in a savepoint: a hook that raises is logged, never undoes the
   record); the next attempt is enqueued after commit. The database away meanwhile (a
   dropped connection, a failover, a deadlock) does not lose the answer: the record is
   tried again, with backoff, for up to half of what is left of the lease
   (:func:`_record_while_leased`). A broker that refuses the next attempt's task is logged;
   the sweep queues it.

A worker that dies mid-send leaves the lease to expire (``DELIVERY_LEASE_SECONDS``, longer
than the attempt task's hard time limit); the sweep then finds the delivery again and the
next claim records the lost attempt (``Outcome.LOST``). A delivery whose success was
recorded is never claimed again, so it is never sent twice by us.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from support import retention
from support.db import DATABASE_GONE
from support.delivery.models import (
    FINISHED_STATUSES,
    OPEN_STATUSES,
    TARGET_FAILURES,
    Attempt,
    Circuit,
    CircuitState,
    Delivery,
    Outcome,
    OutcomeReplay,
)
from support.delivery.registry import (
    Change,
    DeliveryChange,
    DeliveryError,
    SendResult,
    TargetKind,
    error_from_exception,
    target_kind_get,
)
from support.delivery.selectors import OUTCOME_REPLAY
from support.errors import PermanentError, RetryableError
from support.models import DeliveryStatus
from support.outbound import backoff_seconds
from support.services import audit_log_record
from support.sweeps import BROKER_ERRORS, redrive_queue

logger = logging.getLogger(__name__)

_PROCESS = f"{socket.gethostname()[:40]}:{os.getpid()}"
PROBE_WAIT_SECONDS = 5.0  # a delivery refused while another one probes a half-open target
UNKNOWN_KIND_WAIT_SECONDS = 60.0
ERROR_MAX = 5000
# A target still working on a request (outcome ``pending``, ``PendingError``) is asked
# again after the wait it gave, or this many seconds; one delivery waits at most this many
# times (then it is a dead letter like any other, re-driven from the admin).
PENDING_WAIT_DEFAULT = 5.0
PENDING_WAITS_MAX = 120


def _new_owner() -> str:
    return f"{_PROCESS}:{uuid.uuid4().hex[:12]}"


def _lease_seconds(kind: TargetKind | None) -> float:
    if kind is not None and kind.lease_seconds is not None:
        return float(kind.lease_seconds())
    return float(settings.DELIVERY_LEASE_SECONDS)


# --- enqueue ----------------------------------------------------------------------------


def delivery_enqueue(
    *,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any] | None = None,
    target_key: str = "",
    subject_type: str = "",
    subject_id: str | int = "",
    expires_at: datetime | None = None,
) -> Delivery:
    """The delivery of ``payload`` to ``kind`` (one per kind and idempotency key: asking
    twice returns the first row). Its first attempt is enqueued after commit; if that
    enqueue is lost (broker down, crash), the sweep sends it."""
    registered = target_kind_get(kind)
    if registered is None:
        raise ValueError(f"No delivery target kind {kind!r} is registered.")
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                target_kind=kind,
                target_key=target_key[:255],
                idempotency_key=idempotency_key[:255],
                subject_type=subject_type[:32],
                subject_id=str(subject_id)[:64],
                payload=payload or {},
                next_attempt_at=timezone.now(),
                expires_at=expires_at,
            )
    except IntegrityError:
        return Delivery.objects.get(target_kind=kind, idempotency_key=idempotency_key[:255])
    pk = delivery.pk
    transaction.on_commit(lambda: _enqueue(pk, registered, expected_attempts=0))
    return delivery


def _enqueue(
    delivery_id: int,
    kind: TargetKind | None,
    *,
    expected_attempts: int | None,
    countdown: float = 0.0,
) -> bool:
    """Queue an attempt task; False when the broker refused it (``support.sweeps.
    BROKER_ERRORS``), logged, not raised: every caller's change is committed by then (an
    ``on_commit`` callback, the sweep) and the delivery stays open and due, so the sweep
    queues it (``next_attempt_at`` is set: now, the retry's time or the pause's end). A
    refused publish used to escape the commit: it failed the caller after its write
    committed (a 500 for an HTTP request, a routing decision recorded as a failure, a call
    marked failed though its Case was on its way) and skipped the ``on_commit``
    callbacks registered after it."""
    from support.delivery.tasks import delivery_attempt_task

    options: dict[str, Any] = {"countdown": max(0.0, countdown)}
    queue = kind.queue() if kind is not None else None
    if queue:
        options["queue"] = queue
    try:
        delivery_attempt_task.apply_async(args=(delivery_id, expected_attempts), **options)
    except BROKER_ERRORS as exc:
        logger.warning(
            "Delivery %s: its attempt task could not be queued (%s: %s); the delivery sweep "
            "sends it",
            delivery_id,
            type(exc).__name__,
            exc,
        )
        return False
    return True


# --- attempt ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptReport:
    """What one call of :func:`delivery_attempt` did (for tasks, tests and benches)."""

    delivery_id: int
    claimed: bool
    outcome: str = ""
    status: str = ""
    number: int = 0
    next_attempt_in: float | None = None  # seconds, when a retry was scheduled
    paused_until: datetime | None = None  # refused: the target's circuit is open


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    owner: str
    number: int = 0
    paused_until: datetime | None = None


def delivery_attempt(*, delivery_id: int, expected_attempts: int | None = None) -> AttemptReport:
    """Make one attempt at a delivery if it can be claimed (see the module docstring).

    ``expected_attempts``: the attempt count this call was scheduled for (a retry task); it
    may then run before ``next_attempt_at`` (eager Celery, clock skew), and a stale
    duplicate of it finds the count moved on. ``None`` (the sweep): only when due.
    """
    claim = _claim(delivery_id, expected_attempts)
    if claim is None:
        return AttemptReport(delivery_id=delivery_id, claimed=False)
    delivery = claim.delivery
    if claim.paused_until is not None:
        return AttemptReport(
            delivery_id=delivery_id,
            claimed=False,
            status=delivery.status,
            paused_until=claim.paused_until,
        )
    kind = target_kind_get(delivery.target_kind)
    assert kind is not None  # _claim refuses unknown kinds
    started = time.monotonic()
    result: SendResult | None = None
    failure: DeliveryError | None = None
    try:
        if delivery.expires_at is not None and delivery.expires_at <= timezone.now():
            raise DeliveryError(
                "It expired before it could be sent.",
                outcome=Outcome.PERMANENT,
                error_code="expired",
            )
        result = kind.send(delivery)  # no transaction is open here
        outcome = Outcome(kind.classify(result))
    except (DeliveryError, RetryableError, PermanentError) as exc:
        failure = error_from_exception(exc)
        outcome = failure.outcome
    except Exception as exc:
        logger.exception("Delivery %s (%s): send raised", delivery.pk, delivery.target_kind)
        failure = error_from_exception(exc)
        outcome = failure.outcome
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record_while_leased(claim, kind, outcome, result, failure, duration_ms)


def _claim(delivery_id: int, expected_attempts: int | None) -> _Claim | None:
    row = Delivery.objects.filter(pk=delivery_id).values("target_kind", "status").first()
    if row is None or row["status"] not in OPEN_STATUSES:
        return None
    kind = target_kind_get(row["target_kind"])
    now = timezone.now()
    owner = _new_owner()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    if expected_attempts is not None:
        due |= Q(attempts=expected_attempts)
    with transaction.atomic():
        claimed = (
            Delivery.objects.filter(pk=delivery_id, status__in=OPEN_STATUSES)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .filter(due)
            .update(
                lease_owner=owner,
                lease_until=now + timedelta(seconds=_lease_seconds(kind)),
                attempts=F("attempts") + 1,
                total_attempts=F("total_attempts") + 1,
                updated_at=now,
            )
        )
        if not claimed:
            return None
        delivery = Delivery.objects.get(pk=delivery_id)
        if kind is None:
            logger.error(
                "Delivery %s: no target kind %r is registered in this process; left pending",
                delivery_id,
                delivery.target_kind,
            )
            until = now + timedelta(seconds=UNKNOWN_KIND_WAIT_SECONDS)
            _unclaim(delivery, owner, until)
            return _Claim(delivery=delivery, owner=owner, paused_until=until)
        paused_until = _circuit_admit(delivery, owner, now)
        if paused_until is not None:
            _unclaim(delivery, owner, paused_until)
            delivery.next_attempt_at = paused_until
            pk = delivery.pk
            wait = (paused_until - now).total_seconds()
            transaction.on_commit(
                lambda: _enqueue(pk, kind, expected_attempts=None, countdown=wait)
            )
            return _Claim(delivery=delivery, owner=owner, paused_until=paused_until)
        _lost_attempt_record(delivery, kind, now)
    return _Claim(delivery=delivery, owner=owner, number=delivery.total_attempts)


def _unclaim(delivery: Delivery, owner: str, next_attempt_at: datetime) -> None:
    """Give a claim back without counting it (the circuit is open, the kind unknown)."""
    Delivery.objects.filter(pk=delivery.pk, lease_owner=owner).update(
        lease_owner="",
        lease_until=None,
        attempts=F("attempts") - 1,
        total_attempts=F("total_attempts") - 1,
        next_attempt_at=next_attempt_at,
    )


def _lost_attempt_record(delivery: Delivery, kind: TargetKind, now: datetime) -> None:
    """The claim before this one never recorded an outcome: its worker stopped mid-attempt
    (the lease expired). Record that; where the target cannot deduplicate, the send we are
    about to make may be a second copy, so the delivery is counted as a possible duplicate.
    """
    previous = delivery.total_attempts - 1
    if previous < 1 or Attempt.objects.filter(delivery=delivery, number=previous).exists():
        return
    Attempt.objects.create(
        delivery=delivery,
        number=previous,
        outcome=Outcome.LOST,
        error="The worker holding the lease stopped before it recorded an outcome; the "
        "request may or may not have reached the target.",
    )
    _possible_duplicate_record(delivery, kind)
    logger.warning(
        "Delivery %s: attempt %s was lost (lease expired); trying again", delivery.pk, previous
    )


def _possible_duplicate_record(delivery: Delivery, kind: TargetKind) -> None:
    """Count ``delivery`` as a possible duplicate where its kind cannot deduplicate: a send
    about to be repeated after a lost lease, a success recorded after another worker took
    the delivery, a failure whose request may have reached the target
    (``DeliveryError.possible_duplicate``: a POST whose answer timed out, a send taken but
    not recorded)."""
    if kind.deduplicates(delivery) or delivery.possible_duplicate:
        return
    Delivery.objects.filter(pk=delivery.pk).update(
        possible_duplicate=True, updated_at=timezone.now()
    )
    delivery.possible_duplicate = True


def _on_change_run(kind: TargetKind, delivery: Delivery, change: DeliveryChange) -> str:
    """The kind's ``on_change`` hook in a savepoint of the caller's transaction: a hook that
    raises (the message it updates was deleted meanwhile, a bug) is logged and undone on its
    own. It used to roll back the attempt's record with it: a success left the delivery
    leased and unrecorded, so it was sent again at every lease expiry, without end.
    Returns what it raised ("" when it did not)."""
    if kind.on_change is None:
        return ""
    try:
        with transaction.atomic():
            kind.on_change(delivery, change)
    except Exception as exc:
        logger.exception(
            "Delivery %s (%s): the %r hook raised; the delivery's outcome is recorded",
            delivery.pk,
            delivery.target_kind,
            change.event,
        )
        return f"{type(exc).__name__}: {exc}"
    return ""


#: Waits between tries at recording an outcome while the database is away: from
#: ``RECORD_RETRY_BASE`` seconds, doubling, at most ``RECORD_RETRY_CAP`` (jittered).
RECORD_RETRY_BASE = 0.5
RECORD_RETRY_CAP = 5.0


def _record_while_leased(
    claim: _Claim,
    kind: TargetKind,
    outcome: Outcome,
    result: SendResult | None,
    failure: DeliveryError | None,
    duration_ms: int,
) -> AttemptReport:
    """:func:`_record`, tried again while the database is away (``support.db.
    DATABASE_GONE``: a dropped connection, a failover, a deadlock or serialization
    failure), with backoff, for up to half of what is left of the lease. The target has
    answered and this worker still holds the outcome and the lease: given up at once, the
    delivery stayed leased and unrecorded, and once the lease ran out the sweep sent it
    again (a reply the channel had taken reached the customer twice). Each try is one
    transaction that rolled back whole, or committed (a callback after the commit raised:
    the next try finds the attempt recorded under this claim and records nothing again).
    Past the budget the error is raised, logged as an error: the sweep takes the
    delivery once the lease runs out, and counts the attempt as lost."""
    lease_until = claim.delivery.lease_until
    left = (lease_until - timezone.now()).total_seconds() if lease_until else 0.0
    deadline = time.monotonic() + max(left, 0.0) / 2
    tries = 0
    while True:
        tries += 1
        try:
            return _record(claim, kind, outcome, result, failure, duration_ms)
        except DATABASE_GONE as exc:
            wait = backoff_seconds(tries, base=RECORD_RETRY_BASE, cap=RECORD_RETRY_CAP)
            if time.monotonic() + wait > deadline:
                logger.error(
                    "Delivery %s (%s %s) attempt %s: its outcome (%s) could not be recorded "
                    "after %s tries, the database away (%s: %s); it stays leased until %s, "
                    "then the sweep sends it again",
                    claim.delivery.pk,
                    claim.delivery.target_kind,
                    claim.delivery.target_key,
                    claim.number,
                    outcome,
                    tries,
                    type(exc).__name__,
                    exc,
                    lease_until,
                )
                raise
            logger.warning(
                "Delivery %s attempt %s: recording its outcome (%s) failed (%s: %s); "
                "trying again in %.1f s",
                claim.delivery.pk,
                claim.number,
                outcome,
                type(exc).__name__,
                exc,
                wait,
            )
            if not connection.in_atomic_block:  # a caller's transaction is the caller's
                close_old_connections()  # a broken connection is replaced at the next query
            time.sleep(wait)


def _record(
    claim: _Claim,
    kind: TargetKind,
    outcome: Outcome,
    result: SendResult | None,
    failure: DeliveryError | None,
    duration_ms: int,
) -> AttemptReport:
    now = timezone.now()
    if failure is not None:
        http_status = failure.http_status
        error, code = str(failure), failure.error_code
        retry_after, response = failure.retry_after, failure.response_text
    else:
        assert result is not None
        http_status = result.http_status
        error = result.error
        if outcome != Outcome.SUCCESS and not error:
            error = f"HTTP {http_status}" if http_status else f"{outcome.label}"
        code, retry_after, response = result.error_code, result.retry_after, result.response_summary
    if outcome != Outcome.SUCCESS and not code and http_status:
        code = f"http_{http_status}"
    report_delay: float | None = None
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=claim.delivery.pk)
        if Attempt.objects.filter(
            delivery=delivery, number=claim.number, lease_owner=claim.owner
        ).exists():
            # Recorded already by this claim (only this function writes its owner on an
            # attempt): a try whose commit went through before an error reached us.
            return AttemptReport(
                delivery_id=delivery.pk,
                claimed=True,
                outcome=outcome,
                status=delivery.status,
                number=claim.number,
            )
        Attempt.objects.update_or_create(
            delivery=delivery,
            number=claim.number,
            defaults={
                "outcome": outcome,
                "http_status": http_status,
                "duration_ms": duration_ms,
                "error": error[:ERROR_MAX],
                "error_code": code[:64],
                "request_summary": result.request_summary if result is not None else {},
                "response_summary": str(response or "")[:2000],
                "lease_owner": claim.owner,
            },
        )
        _circuit_record(delivery, outcome, retry_after, error, now)
        if failure is not None and failure.possible_duplicate:
            _possible_duplicate_record(delivery, kind)
        # Our lease expired and another worker took the delivery: a success is a fact (the
        # target accepted it) and is kept unless one was already recorded; anything else
        # is left to the lease holder.
        lease_lost = delivery.lease_owner != claim.owner
        if lease_lost and (
            outcome != Outcome.SUCCESS or delivery.status == DeliveryStatus.SUCCEEDED
        ):
            if outcome == Outcome.SUCCESS:
                _possible_duplicate_record(delivery, kind)
            logger.warning(
                "Delivery %s: attempt %s finished after its lease was lost (%s)",
                delivery.pk,
                claim.number,
                outcome,
            )
            return AttemptReport(
                delivery_id=delivery.pk,
                claimed=True,
                outcome=outcome,
                status=delivery.status,
                number=claim.number,
            )
        delivery.lease_owner = ""
        delivery.lease_until = None
        delivery.last_http_status = http_status
        if outcome == Outcome.SUCCESS:
            assert result is not None
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.completed_at = now
            delivery.next_attempt_at = None
            delivery.external_id = (result.external_id or delivery.external_id)[:255]
            delivery.last_error = ""
            delivery.error_code = ""
            change = DeliveryChange(event="succeeded", result=result)
        else:
            schedule = kind.schedule()
            if outcome == Outcome.PENDING:
                # Nothing failed: the attempt is given back (the retry task expects the
                # count as it stands after this) and the target's own wait is used, within
                # the engine's cap on retry-after and on how many times one delivery waits.
                delivery.attempts -= 1
                waits = Attempt.objects.filter(delivery=delivery, outcome=Outcome.PENDING).count()
                final = waits > PENDING_WAITS_MAX
                if final:
                    error = f"Still pending after {waits} checks: {error}"
                    code = code or "pending_too_long"
                else:
                    report_delay = min(
                        max(float(retry_after or PENDING_WAIT_DEFAULT), 1.0),
                        float(settings.DELIVERY_RETRY_AFTER_MAX_SECONDS),
                    )
            else:
                final = outcome == Outcome.PERMANENT or delivery.attempts >= schedule.max_attempts
                if not final:
                    report_delay = schedule.delay(delivery.attempts, retry_after)
            if not final:
                assert report_delay is not None
                expires = delivery.expires_at
                final = expires is not None and now + timedelta(seconds=report_delay) >= expires
            delivery.last_error = error[:ERROR_MAX]
            delivery.error_code = code[:64]
            if final:
                report_delay = None
                delivery.status = DeliveryStatus.DEAD
                delivery.completed_at = now
                delivery.next_attempt_at = None
            else:
                assert report_delay is not None
                delivery.status = DeliveryStatus.RETRYING
                delivery.next_attempt_at = now + timedelta(seconds=report_delay)
            change = DeliveryChange(
                event="dead" if final else "retrying",
                result=result,
                error=error,
                error_code=code,
                gave_up=final and outcome != Outcome.PERMANENT,
            )
        delivery.save()
        _on_change_run(kind, delivery, change)
        if report_delay is not None:
            pk, expected, countdown = delivery.pk, delivery.attempts, report_delay
            transaction.on_commit(
                lambda: _enqueue(pk, kind, expected_attempts=expected, countdown=countdown)
            )
    log = logger.info if outcome == Outcome.SUCCESS else logger.warning
    log(
        "Delivery %s (%s %s) attempt %s: %s%s",
        delivery.pk,
        delivery.target_kind,
        delivery.target_key,
        claim.number,
        outcome,
        f", retry in {report_delay:.1f}s" if report_delay is not None else f" → {delivery.status}",
    )
    return AttemptReport(
        delivery_id=delivery.pk,
        claimed=True,
        outcome=outcome,
        status=delivery.status,
        number=claim.number,
        next_attempt_in=report_delay,
    )


# --- circuit breaking -------------------------------------------------------------------


def _circuit_admit(delivery: Delivery, owner: str, now: datetime) -> datetime | None:
    """None when the delivery may be sent now (closed, or it becomes the half-open probe);
    else the time to try again."""
    circuit = Circuit.objects.filter(
        target_kind=delivery.target_kind, target_key=delivery.target_key
    ).first()
    if circuit is None or circuit.state == CircuitState.CLOSED:
        return None
    if circuit.state == CircuitState.OPEN and circuit.open_until and circuit.open_until > now:
        return circuit.open_until
    probe_until = now + timedelta(seconds=_lease_seconds(target_kind_get(delivery.target_kind)))
    became_probe = (
        Circuit.objects.filter(pk=circuit.pk)
        .filter(
            Q(state=CircuitState.OPEN, open_until__lte=now)
            | Q(state=CircuitState.OPEN, open_until__isnull=True)
            | Q(state=CircuitState.HALF_OPEN, probe_until__lte=now)
            | Q(state=CircuitState.HALF_OPEN, probe_until__isnull=True)
        )
        .update(state=CircuitState.HALF_OPEN, probe_until=probe_until, probe_owner=owner)
    )
    if became_probe:
        logger.info("Circuit %s:%s half-open: probing", delivery.target_kind, delivery.target_key)
        return None
    return now + timedelta(seconds=PROBE_WAIT_SECONDS)


def _circuit_record(
    delivery: Delivery, outcome: Outcome, retry_after: float | None, error: str, now: datetime
) -> None:
    kind, key = delivery.target_kind, delivery.target_key
    if outcome not in TARGET_FAILURES:
        if outcome != Outcome.LOST:  # the target answered: it is up
            Circuit.objects.filter(target_kind=kind, target_key=key).exclude(
                state=CircuitState.CLOSED, consecutive_failures=0
            ).update(
                state=CircuitState.CLOSED,
                consecutive_failures=0,
                open_until=None,
                probe_until=None,
                probe_owner="",
                updated_at=now,
            )
        return
    circuit, _ = Circuit.objects.select_for_update().get_or_create(target_kind=kind, target_key=key)
    circuit.consecutive_failures += 1
    circuit.last_error = error[:2000]
    circuit.last_failure_at = now
    threshold = int(settings.DELIVERY_CIRCUIT_FAILURES)
    pause = 0.0
    if outcome == Outcome.THROTTLED and retry_after:
        # The target said when to come back: nothing goes to it before then.
        pause = min(float(retry_after), float(settings.DELIVERY_RETRY_AFTER_MAX_SECONDS))
    if (
        circuit.state == CircuitState.HALF_OPEN
        or outcome == Outcome.AUTH
        or (threshold > 0 and circuit.consecutive_failures >= threshold)
    ):
        pause = max(pause, float(settings.DELIVERY_CIRCUIT_COOLOFF_SECONDS))
    if pause > 0:
        until = now + timedelta(seconds=pause)
        if circuit.state != CircuitState.OPEN:
            circuit.opened_at = now
            circuit.times_opened += 1
            logger.warning(
                "Circuit %s:%s open for %.0fs after %s consecutive failure(s): %s",
                kind,
                key,
                pause,
                circuit.consecutive_failures,
                error[:200],
            )
        circuit.state = CircuitState.OPEN
        circuit.open_until = max(until, circuit.open_until or until)
        circuit.probe_until = None
        circuit.probe_owner = ""
    circuit.save()


def circuit_close(*, circuit_ids: Iterable[int], actor: Any) -> int:
    """Close circuits by hand (admin "resume now", audited): deliveries they paused are
    due again at once."""
    now = timezone.now()
    closed = 0
    with transaction.atomic():
        for circuit in Circuit.objects.select_for_update().filter(pk__in=list(circuit_ids)):
            if circuit.state == CircuitState.CLOSED and not circuit.consecutive_failures:
                continue
            paused_until = circuit.open_until
            previous = circuit.state
            circuit.state = CircuitState.CLOSED
            circuit.consecutive_failures = 0
            circuit.open_until = None
            circuit.probe_until = None
            circuit.probe_owner = ""
            circuit.save()
            if paused_until is not None:
                Delivery.objects.filter(
                    target_kind=circuit.target_kind,
                    target_key=circuit.target_key,
                    status__in=OPEN_STATUSES,
                    next_attempt_at__gt=now,
                    next_attempt_at__lte=paused_until,
                ).update(next_attempt_at=now)
            audit_log_record(
                actor=actor,
                action="delivery.circuit_closed",
                object_type="delivery_circuit",
                object_id=circuit.pk,
                details={
                    "target_kind": circuit.target_kind,
                    "target_key": circuit.target_key,
                    "previous_state": previous,
                },
            )
            closed += 1
        if closed:
            # robust: the circuits are closed; a broker down is logged, the beat sweeps
            transaction.on_commit(_sweep_soon, robust=True)
    return closed


def _sweep_soon() -> None:
    from support.delivery.tasks import delivery_sweep_task

    delivery_sweep_task.apply_async(kwargs={"grace_seconds": 0})


# --- sweep ------------------------------------------------------------------------------


def deliveries_sweep(*, grace_seconds: float | None = None, limit: int | None = None) -> int:
    """Enqueue an attempt for every open delivery that is due (its retry task was lost)
    or was never enqueued (its first task was lost: ``next_attempt_at`` empty or past),
    has no live lease, and whose target's circuit is not open. Returns how many."""
    now = timezone.now()
    grace = float(settings.DELIVERY_SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds)
    cutoff = now - timedelta(seconds=grace)
    open_circuit = Circuit.objects.filter(
        target_kind=OuterRef("target_kind"),
        target_key=OuterRef("target_key"),
        state=CircuitState.OPEN,
        open_until__gt=now,
    )
    due = (
        Delivery.objects.filter(status__in=OPEN_STATUSES)
        .filter(
            Q(next_attempt_at__isnull=True, created_at__lte=cutoff) | Q(next_attempt_at__lte=cutoff)
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .exclude(Exists(open_circuit))
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
        .values_list("pk", "target_kind", "attempts", "next_attempt_at")[
            : limit or int(settings.DELIVERY_SWEEP_BATCH)
        ]
    )
    count = 0
    for pk, kind_name, attempts, next_attempt_at in due:
        kind = target_kind_get(kind_name)
        # Move the row's next attempt one lease ahead (only if nothing touched it since it
        # was read): the attempt task sent now claims it by its attempt count, and while
        # that task waits in a backed-up queue the next sweeps leave the row alone instead
        # of queueing a copy every run. A task lost again is found one lease later.
        moved = (
            Delivery.objects.filter(
                pk=pk,
                status__in=OPEN_STATUSES,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
            )
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .update(next_attempt_at=now + timedelta(seconds=_lease_seconds(kind)))
        )
        if not moved:
            continue
        if not _enqueue(pk, kind, expected_attempts=attempts):
            # the broker is down: this row is found again one lease later, the rest of
            # the batch at the next run (as ``support.sweeps.redrive_queue`` stops)
            break
        count += 1
    if count:
        logger.info("Delivery sweep enqueued %s delivery(ies)", count)
    return count


def delivery_outcome_replay(*, delivery_id: int) -> bool:
    """Run the kind's ``on_change`` hook again for a finished delivery (succeeded or dead),
    rebuilt from what the engine recorded: for an integration whose hook failed when the
    outcome was recorded (``_on_change_run`` logs it and keeps the record), so its own
    state (a reply left ``queued``) is put right by its sweep, through
    :func:`deliveries_outcome_replay`. The hook must be idempotent. Nothing is sent. True
    when the hook ran and did not raise; False when it raised (what it raised is kept on
    the delivery's ``OutcomeReplay`` row, when it has one), the delivery is not finished
    or its kind is unknown. A success's ``SendResult.data`` is not stored, so the hook gets
    none."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            return False
        kind = target_kind_get(delivery.target_kind)
        if kind is None:
            return False
        if delivery.status == DeliveryStatus.SUCCEEDED:
            result = SendResult(
                http_status=delivery.last_http_status, external_id=delivery.external_id
            )
            change = DeliveryChange(event=Change.SUCCEEDED, result=result)
        elif delivery.status == DeliveryStatus.DEAD:
            last = delivery.attempt_log.order_by("-number").values_list("outcome", flat=True)
            change = DeliveryChange(
                event=Change.DEAD,
                error=delivery.last_error,
                error_code=delivery.error_code,
                gave_up=last.first() != Outcome.PERMANENT,
            )
        else:
            return False
        error = _on_change_run(kind, delivery, change)
        OutcomeReplay.objects.filter(delivery=delivery).update(
            last_error=error[:ERROR_MAX], updated_at=timezone.now()
        )
    return not error


def deliveries_outcome_replay(
    *, delivery_ids: Sequence[int], stale_seconds: float, what: str
) -> int:
    """Replay the hook of the finished deliveries ``delivery_ids`` (in that order) whose
    integration's sweep found its own state behind (:func:`delivery_outcome_replay`),
    counted, spaced out and bounded the one way re-drives are (``support.sweeps``, policy
    ``selectors.OUTCOME_REPLAY``, on each delivery's ``OutcomeReplay`` row): a delivery
    whose wait after its last replay is not over is skipped, and one replayed
    ``max_redrives`` times that is due again is given up (``given_up_at``, its last error
    kept, a warning logged), left for a supervisor (:func:`outcome_replays_again`). A
    sweep chooses its batch with ``selectors.outcome_replay_due_q`` so such replays never
    fill it. ``stale_seconds``: the caller's age threshold (0 on a worker's connection;
    never under the policy's floor). Returns how many hooks ran without raising."""
    now = timezone.now()
    ids = list(dict.fromkeys(delivery_ids))
    finished = Delivery.objects.filter(pk__in=ids, status__in=FINISHED_STATUSES)
    OutcomeReplay.objects.bulk_create(
        [OutcomeReplay(delivery_id=pk) for pk in finished.values_list("pk", flat=True)],
        ignore_conflicts=True,
    )
    due = OUTCOME_REPLAY.due_q(now, stale_seconds)
    pending = OutcomeReplay.objects.filter(
        given_up_at__isnull=True, delivery__status__in=FINISHED_STATUSES
    )
    spent = pending.filter(due, pk__in=ids, attempts__gte=OUTCOME_REPLAY.max_redrives)
    for replay in spent:
        reason = OUTCOME_REPLAY.give_up_reason(
            replay.attempts, replay.last_error, "the hook did not put it right"
        )
        given_up = pending.filter(due, pk=replay.pk).update(
            given_up_at=now, last_error=reason[:ERROR_MAX], updated_at=now
        )
        if given_up:
            logger.warning("%s: delivery %s's status update %s", what, replay.pk, reason)
    succeeded: list[int] = []

    def replay_now(pk: int) -> None:  # run at once (no task: nothing is sent)
        if delivery_outcome_replay(delivery_id=pk):
            succeeded.append(pk)

    redrive_queue(
        pending.filter(attempts__lt=OUTCOME_REPLAY.max_redrives),
        ids,
        queue=replay_now,
        now=now,
        what=what,
        due=due,
    )
    return len(succeeded)


def outcome_replays_again(*, delivery_ids: Iterable[int], actor: Any) -> int:
    """Replay again the hooks whose replays were given up (admin, supervisors, each
    audited), once what made them fail is fixed: their count starts again and the
    integration's next sweep runs them (the reply sweep's: within a minute). Others are
    left alone."""
    count = 0
    with transaction.atomic():
        given_up = OutcomeReplay.objects.select_for_update().filter(
            delivery_id__in=list(delivery_ids), given_up_at__isnull=False
        )
        for replay in given_up.select_related("delivery").order_by("pk"):
            audit_log_record(
                actor=actor,
                action="delivery.outcome_replayed_again",
                object_type="delivery",
                object_id=replay.pk,
                details={
                    "target_kind": replay.delivery.target_kind,
                    "idempotency_key": replay.delivery.idempotency_key,
                    "replays": replay.attempts,
                    "last_error": replay.last_error[:500],
                },
            )
            replay.attempts = 0
            replay.attempted_at = None
            replay.given_up_at = None
            replay.save(update_fields=["attempts", "attempted_at", "given_up_at", "updated_at"])
            count += 1
    return count


# --- dead letters -----------------------------------------------------------------------


def delivery_redrive(*, delivery_ids: Iterable[int], actor: Any) -> int:
    """Send dead letters again (admin, single or bulk; each audited): a fresh cycle of
    attempts, their history kept. Deliveries that are not dead are left alone."""
    now = timezone.now()
    count = 0
    with transaction.atomic():
        dead = Delivery.objects.select_for_update().filter(
            pk__in=list(delivery_ids), status=DeliveryStatus.DEAD
        )
        for delivery in dead.order_by("pk"):
            previous_error = delivery.last_error
            delivery.status = DeliveryStatus.PENDING
            delivery.attempts = 0
            delivery.next_attempt_at = now
            delivery.completed_at = None
            delivery.lease_owner = ""
            delivery.lease_until = None
            delivery.save()
            # a new cycle: its outcome's hook is replayed afresh if it fails again
            OutcomeReplay.objects.filter(delivery=delivery).delete()
            audit_log_record(
                actor=actor,
                action="delivery.redriven",
                object_type="delivery",
                object_id=delivery.pk,
                details={
                    "target_kind": delivery.target_kind,
                    "target_key": delivery.target_key,
                    "idempotency_key": delivery.idempotency_key,
                    "last_error": previous_error[:500],
                },
            )
            kind = target_kind_get(delivery.target_kind)
            if kind is not None:
                _on_change_run(kind, delivery, DeliveryChange(event="redriven"))
            pk = delivery.pk
            transaction.on_commit(
                lambda pk=pk, kind=kind: _enqueue(pk, kind, expected_attempts=0)  # type: ignore[misc]
            )
            count += 1
    return count


# --- retention --------------------------------------------------------------------------


def deliveries_purge(
    *,
    now: datetime | None = None,
    days: int | None = None,
    batch: int = retention.BATCH,
    max_batches: int = retention.MAX_BATCHES,
) -> retention.PurgeResult:
    """Delete the deliveries that finished more than ``DELIVERY_RETENTION_DAYS`` ago, with
    their attempt logs (recipients, request and answer summaries, errors: personal data
    kept as long as nothing needs it) and their status update replays. 0 (or less) keeps
    every delivery.

    Only what nothing can still act on goes, counted from ``completed_at`` (when it last
    finished: a re-drive empties it): deliveries that succeeded, and dead letters past
    their expiry (a web chat code, a status poll: a re-drive would only expire again).
    Kept whatever their age: open ones (pending, retrying: a lease is only ever held on
    those), dead letters a supervisor can still re-drive (counted and logged, as the raw
    events' are, ``support.retention``), those marked *possible duplicate* (the
    ``support_deliveries_possible_duplicates`` level never falls: alarm rules watch its
    increase), and those whose status update replays were given up or last failed (the
    integration's own state is behind, a reply still ``queued``, which its sweep puts right
    only from the delivery).

    ``batch`` at a time, each batch in a short transaction of its own (its attempts first,
    by the ``(delivery, number)`` index, then the deliveries), at most ``max_batches`` per
    run (``support.retention.delete_in_batches``: a backlog is worked off over the hourly
    runs), found through the partial index ``delivery_finished_idx``; a second run deletes
    nothing more (idempotent)."""
    days = settings.DELIVERY_RETENTION_DAYS if days is None else days
    if days <= 0:
        return retention.PurgeResult(deleted=0)
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    old = Delivery.objects.filter(status__in=FINISHED_STATUSES, completed_at__lt=cutoff)
    replay_behind = OutcomeReplay.objects.filter(delivery=OuterRef("pk")).filter(
        Q(given_up_at__isnull=False) | ~Q(last_error="")
    )
    done = (
        old.filter(Q(status=DeliveryStatus.SUCCEEDED) | Q(expires_at__lte=now))
        .filter(possible_duplicate=False)
        .exclude(Exists(replay_behind))
        .only("pk")
    )
    attempts = 0

    def attempts_delete(ids: list[int]) -> None:
        nonlocal attempts
        attempts += Attempt.objects.filter(delivery_id__in=ids).delete()[0]

    deleted = retention.delete_in_batches(
        done, batch=batch, max_batches=max_batches, before_delete=attempts_delete
    )
    dead_kept = old.filter(status=DeliveryStatus.DEAD).exclude(expires_at__lte=now).count()
    if deleted:
        logger.info(
            "Deliveries purged (finished more than %s days ago): %s, with %s attempt(s)",
            days,
            deleted,
            attempts,
        )
    if dead_kept:
        logger.warning(
            "Deliveries: %s dead letter(s) older than %s days are kept until re-driven",
            dead_kept,
            days,
        )
    return retention.PurgeResult(deleted=deleted, dead_letters_kept=dead_kept)
