"""Inbound, step two: process recorded deliveries into tickets, one by one
(``inbound_event_process``) or a whole account's backlog at a time
(``inbound_events_drain``, whose runs of plain messages take the bulk path in
``channels_app.services.bulk``); failures, retries, re-drives and the sweep."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis import RedisError

from channels_app import selectors
from channels_app.adapters.base import (
    InboundMessage,
    StatusUpdate,
    UnknownEvent,
    WebhookRequest,
    get_adapter,
)
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus, SentEventOutcome
from channels_app.services.bulk import _message_is_plain, _messages_ingest_bulk
from channels_app.services.email_auth import EmailQuarantined
from channels_app.services.email_threading import EmailSetAside
from channels_app.services.ingest import _message_ingest
from channels_app.services.matching import _BatchCache
from channels_app.services.media import media_kept_in_delivery
from channels_app.services.sent_events import sent_event_record
from channels_app.services.staged_uploads import (
    inbound_events_staged_names,
    staged_uploads_delete_on_commit,
)
from support.db import advisory_xact_lock
from support.errors import PermanentError, RetryableError
from support.redis_client import Lease, enqueue_once, get_redis, pending_clear
from support.services import audit_log_record
from tickets import services as ticket_services
from tickets.models import (
    Direction,
    Message,
    MessageKind,
)

logger = logging.getLogger(__name__)


STATUS_RETRIES = 3  # a status may arrive before our send recorded the message id


DRAIN_FLAG = "channels:inbound-drain:{account_id}"


def inbound_drain_wake(account_id: int) -> None:
    """Enqueue one drain task for the account unless one is already pending.

    A Redis ``SET NX`` flag (cleared when the drain starts) collapses a burst of deliveries
    into one task; the beat sweep re-enqueues anything left behind (e.g. Redis down).
    """
    from channels_app.tasks import inbound_events_drain_task

    enqueue_once(
        DRAIN_FLAG.format(account_id=account_id),
        lambda: inbound_events_drain_task.delay(account_id),
        seconds=5,
        failed="Could not enqueue the inbound drain; the sweep will process it",
    )


def inbound_drain_flag_clear(*, account_id: int) -> None:
    pending_clear(DRAIN_FLAG.format(account_id=account_id))


DRAINER_LEASE = "channels:inbound-drainer:{account_id}"
#: How long a drainer that stops renewing (it died) keeps others out. A drain renews it every
#: few seconds between batches; a batch lasting longer lets a second drain in, which then
#: waits on the batch lock as every drain did before the lease.
DRAINER_LEASE_SECONDS = 15
#: At most one delayed check per account for a drainer that may have died (see below).
DRAINER_RECHECK_FLAG = "channels:inbound-drainer-recheck:{account_id}"


@contextmanager
def inbound_drainer(*, account_id: int) -> Iterator[Callable[[], object] | None]:
    """Make the calling drain task the account's one drainer while it runs: yields the
    function that renews its lease (call it between batches) or, when another task already
    is the drainer, None at once. That one loops until nothing is left, so a second has
    nothing to do and gives its worker back: before, it waited on the batch lock, and a
    burst held every realtime worker process in drains of one account while the outbox
    relay (live events) and outbound replies queued behind them. Redis down: the task
    drains anyway (the batch lock keeps the order, as before the lease).

    The wake flag is cleared by the drainer only (``inbound_drain_flag_clear`` after this
    yields a function): a task that gives way leaves it set, so a burst wakes one task per
    flag lifetime, not one per delivery. A task that gives way also schedules one check for
    when the lease would expire (a drainer killed mid-drain renews it no more): recovery in
    seconds, not at the sweep's two minutes.

    On leaving, the lease is released first and then deliveries still ``received`` start a
    new drain (directly: the wake flag may still be set by a task that gave way): one
    recorded while the drainer was finishing is not left for the sweep, and a drainer
    handing over after ``DRAIN_TASK_SECONDS`` starts its successor the same way.
    """
    lease: Lease | None = Lease(DRAINER_LEASE.format(account_id=account_id), DRAINER_LEASE_SECONDS)
    try:
        taken = lease is not None and lease.take()
    except RedisError:
        logger.warning("No drainer lease for account %s (Redis): draining anyway", account_id)
        lease, taken = None, True
    if not taken:
        _drainer_recheck(account_id, DRAINER_LEASE.format(account_id=account_id))
        yield None
        return
    try:
        yield lease.renew if lease is not None else _no_lease
    finally:
        if lease is not None:
            lease.release()
        # A task that gave way meanwhile left the flag set: cleared, a delivery recorded
        # after the check below wakes a drain at once (one before it is found by it).
        inbound_drain_flag_clear(account_id=account_id)
        try:
            left = InboundEvent.objects.filter(
                account_id=account_id, status=InboundStatus.RECEIVED
            ).exists()
        except DatabaseError:  # the drain's own error is on its way (and retried)
            left = False
        if left:
            _drain_enqueue(account_id)


def _no_lease() -> None:
    """Renewing without a lease (Redis was down when the drain began)."""


def _drain_enqueue(account_id: int, countdown: float = 0) -> None:
    from channels_app.tasks import inbound_events_drain_task

    try:
        inbound_events_drain_task.apply_async((account_id,), countdown=countdown)
    except Exception:  # noqa: BLE001 - the broker down: the sweep takes the rest
        logger.warning("Could not enqueue the inbound drain; the sweep will process it")


def _drainer_recheck(account_id: int, lease_key: str) -> None:
    """One drain task for when the holder's lease runs out, unless one is scheduled."""
    from channels_app.tasks import inbound_events_drain_task

    if inbound_events_drain_task.app.conf.task_always_eager:
        return  # tests and single-process demos: nothing runs later
    try:
        seconds = max(int(get_redis().ttl(lease_key)), 0) + 1
    except RedisError:
        return
    # The flag lapses as the check comes due: a check that finds the lease renewed (the
    # holder alive) schedules the next one, until a check finds it gone.
    enqueue_once(
        DRAINER_RECHECK_FLAG.format(account_id=account_id),
        lambda: _drain_enqueue(account_id, countdown=seconds),
        seconds=seconds,
        failed="Could not schedule the drainer check; the sweep will process what is left",
    )


def inbound_retry_enqueue(event_id: int, *, attempts: int, countdown: float = 0) -> None:
    """Queue the retry of a ``retrying`` event that has failed ``attempts`` times (the
    task processes it only while that is still so: a late copy of a retry whose event the
    sweep handed back to the drain, and that failed again since, does nothing). Called
    after the commit that made it ``retrying``: a broker error is logged, not raised (the
    commit stands, and the sweep hands the event back to the drain once its retry is
    overdue)."""
    from channels_app.tasks import inbound_event_process_task

    try:
        inbound_event_process_task.apply_async(
            (event_id,), {"attempts": attempts}, countdown=countdown
        )
    except Exception:  # noqa: BLE001 - the broker down: the sweep takes it
        logger.warning(
            "Could not enqueue the retry of inbound event %s; the sweep will process it",
            event_id,
        )


# --- inbound: process ---------------------------------------------------------------------


@dataclass
class ProcessOutcome:
    created_messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    unmatched_statuses: int = 0
    unknown: int = 0
    quarantined: int = 0  # e-mail under CHANNELS_EMAIL_AUTH_POLICY=reject
    quarantine_reasons: list[str] = field(default_factory=list)
    released_by: str = ""  # the supervisor who released a quarantined e-mail
    # e-mail from our own address, or automatic mail with no ticket to go on: no ticket,
    # the delivery processed with the reasons (channels_app.services.email_threading)
    set_aside: int = 0
    set_aside_reasons: list[str] = field(default_factory=list)
    # provider events about sent mail (SendGrid): only recorded / naming no message of ours
    recorded_events: int = 0
    unmatched_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.__dict__)
        for name in ("recorded_events", "unmatched_events"):
            if not data[name]:
                del data[name]
        if not self.quarantined:
            del data["quarantined"], data["quarantine_reasons"]
        if not self.released_by:
            del data["released_by"]
        if not self.set_aside:
            del data["set_aside"], data["set_aside_reasons"]
        return data


def inbound_event_process(
    *, event_id: int, retry: bool = False, expected_attempts: int | None = None
) -> ProcessOutcome | None:
    """Normalise one recorded delivery into tickets (idempotent: safe to run twice).

    Raises ``RetryableError`` when a status names a message not (yet) recorded; the task
    retries with backoff and the last attempt records it as unmatched.

    ``retry`` (the retry task's call) processes the event only while it is ``retrying``:
    an event the sweep handed back to the drain (``received`` again, its retry overdue) is
    the drain's, so a late retry task does nothing rather than run a second retry chain;
    with ``expected_attempts`` (the failures counted when the retry was queued) only while
    that count holds (handed back, failed again in the drain: a new retry is queued, and
    this late one leaves the event to it).
    """
    with transaction.atomic():
        # One transaction (one commit) per delivery; the row lock makes a concurrent
        # duplicate task wait, then find the event processed. ``of`` spares the account row.
        event = (
            InboundEvent.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=event_id)
        )
        if event.status in DONE_STATUSES:
            return None
        if retry and event.status != InboundStatus.RETRYING:
            return None
        if expected_attempts is not None and event.attempts != expected_attempts:
            return None
        outcome = _event_apply(event, event.account, _BatchCache())
        _events_mark_done([(event, outcome)])
    return outcome


DONE_STATUSES = (
    InboundStatus.PROCESSED,
    InboundStatus.IGNORED,
    InboundStatus.MALFORMED,
    InboundStatus.QUARANTINED,
    InboundStatus.CLOSED,
)
DRAIN_BATCH = 100  # rows of a batch become visible together: small keeps latency low


def _event_apply(
    event: InboundEvent, account: ChannelAccount, cache: _BatchCache
) -> ProcessOutcome:
    """Apply one delivery's normalised items; raises ``RetryableError`` (to roll it back
    and retry later) when a status names a message not recorded yet."""
    attempts = event.attempts + 1
    adapter = get_adapter(event.channel)
    request = WebhookRequest(headers=event.headers, body=event.body_bytes)
    outcome = ProcessOutcome(released_by=str(event.summary.get("released_by") or ""))
    released = bool(outcome.released_by)
    messages = 0
    for item in adapter.parse(account, request):
        if isinstance(item, InboundMessage):
            item = media_kept_in_delivery(item, event_id=event.pk, message_index=messages)
            messages += 1
            try:
                created = _message_ingest(adapter, account, item, cache, released=released)
            except EmailQuarantined as exc:  # raised before anything was written
                outcome.quarantined += 1
                outcome.quarantine_reasons += exc.reasons
                continue
            except EmailSetAside as exc:  # our own or automatic mail: kept here only
                outcome.set_aside += 1
                outcome.set_aside_reasons += exc.reasons
                continue
            if created:
                outcome.created_messages += 1
            else:
                outcome.duplicates += 1
        elif isinstance(item, StatusUpdate) and item.event_id:
            # an event of its own (SendGrid): recorded once, never retried for a message
            # it does not name (our message exists before it is sent)
            recorded = sent_event_record(account=account, inbound_event=event, status=item)
            if recorded is None:
                outcome.duplicates += 1
            elif recorded == SentEventOutcome.UNMATCHED:
                outcome.unmatched_events += 1
            elif recorded == SentEventOutcome.APPLIED:
                outcome.statuses += 1
            else:
                outcome.recorded_events += 1
        elif isinstance(item, StatusUpdate):
            if _status_apply(event.channel, item):
                outcome.statuses += 1
            else:
                outcome.unmatched_statuses += 1
        else:
            assert isinstance(item, UnknownEvent)
            logger.info(
                "Unknown %s event acknowledged (event %s): %s",
                event.channel,
                event.pk,
                item.description,
            )
            outcome.unknown += 1
    if outcome.unmatched_statuses and attempts < STATUS_RETRIES:
        # rolls back this attempt; inbound_event_fail counts it
        raise RetryableError(
            f"{outcome.unmatched_statuses} status update(s) for messages not recorded yet."
        )
    return outcome


def _events_mark_done(done: list[tuple[InboundEvent, ProcessOutcome]]) -> None:
    """One UPDATE for the whole batch (rows joined to arrays: Django's ``bulk_update``
    builds a CASE per column and row, which cost half of a 100-delivery drain)."""
    if not done:
        return
    now = timezone.now()
    for event, outcome in done:
        applied = (
            outcome.created_messages
            or outcome.duplicates
            or outcome.statuses
            or outcome.recorded_events
            or outcome.unmatched_events
        )
        if outcome.quarantined and not applied:
            event.status = InboundStatus.QUARANTINED
        elif outcome.unknown and not applied:
            event.status = InboundStatus.IGNORED
        else:
            event.status = InboundStatus.PROCESSED
        event.attempts += 1
        event.processed_at = now
        event.error = ""
        event.summary = outcome.as_dict()
        event.updated_at = now
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS e SET status = v.status, attempts = e.attempts + 1, claims = 0, "  # noqa: S608
            "processed_at = %s, error = '', summary = v.summary, updated_at = %s "
            "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS status, "
            "unnest(%s::text[])::jsonb AS summary) AS v WHERE e.id = v.id",
            [
                now,
                now,
                [event.pk for event, _ in done],
                [event.status for event, _ in done],
                [json.dumps(event.summary) for event, _ in done],
            ],
        )


#: Drains that took a delivery and never finished with it (the worker stopped: killed,
#: out of memory, the task's hard time limit) after which it is set aside as ``dead``.
WORKER_STOPS_LIMIT = 3
WORKER_STOPPED_ERROR = (
    "The worker processing this delivery stopped before finishing, {count} times (killed: "
    "out of memory or the task's time limit); set aside so that the account's other "
    "deliveries go on. Re-process it once the cause is fixed, or close it."
)


def _drain_claim(account_id: int, limit: int) -> tuple[list[int], int]:
    """Claim the account's next received deliveries for a drain, in a transaction of its
    own (committed before they are processed): each one's ``claims`` is counted up here
    and back to 0 when a drain finishes with it (processed, or its failure counted), so a
    count left over is a worker that stopped in the middle of a batch (killed, out of
    memory, the hard time limit). That batch's transaction rolled back with nothing
    counted, and without this the next drain would take the same batch, stop the same
    way, and hold the account's intake for ever.

    The claim runs up to the first delivery with a count left; such a delivery is taken
    alone (the one that stops the worker is among them, not known which) and, once
    ``WORKER_STOPS_LIMIT`` drains stopped with it, set aside as ``dead`` (kept, counted
    with the dead letters, re-processed or closed by a supervisor) instead of processed.
    Returns the claimed ids and how many were set aside (0 or 1)."""
    with transaction.atomic():
        advisory_xact_lock(f"inbound-drain:{account_id}")
        rows = list(
            InboundEvent.objects.select_for_update(skip_locked=True)
            .filter(account_id=account_id, status=InboundStatus.RECEIVED)
            .order_by("id")
            .values_list("id", "claims")[:limit]
        )
        if not rows:
            return [], 0
        first, stops = rows[0]
        if stops >= WORKER_STOPS_LIMIT:
            logger.error("Inbound event %s stopped %d drains: set aside as dead", first, stops)
            InboundEvent.objects.filter(pk=first).update(
                status=InboundStatus.DEAD,
                attempts=F("attempts") + 1,
                error=WORKER_STOPPED_ERROR.format(count=stops),
                updated_at=timezone.now(),
            )
            return [], 1
        if stops:
            logger.warning(
                "A drain stopped with inbound event %s in it (%d time(s)): taken alone",
                first,
                stops,
            )
            rows = rows[:1]
        else:
            rows = list(takewhile(lambda row: not row[1], rows))
        ids = [pk for pk, _ in rows]
        InboundEvent.objects.filter(pk__in=ids).update(claims=F("claims") + 1)
    return ids, 0


@dataclass
class DrainResult:
    taken: int
    retries: list[tuple[int, float, int]]  # (event id, delay, attempts): retried alone


def inbound_events_drain(*, account_id: int, limit: int = DRAIN_BATCH) -> DrainResult:
    """Process up to ``limit`` received deliveries of one account in one transaction, in
    arrival order; returns how many were taken (0: nothing left) and which failed.

    One drainer per account at a time (a transaction-level advisory lock; a second one
    waits, then finds what is left), so messages of one conversation keep their order.
    Each delivery runs in its own savepoint: a failing one is rolled back alone, counted,
    and (unless dead) returned for ``inbound_event_process_task`` to retry with backoff.
    Exactly-once effects rest on the unique constraints, as in ``inbound_event_process``.
    """
    ids, set_aside = _drain_claim(account_id, limit)
    if not ids:
        return DrainResult(taken=set_aside, retries=[])
    failed: list[tuple[int, str, Exception]] = []
    with transaction.atomic():
        advisory_xact_lock(f"inbound-drain:{account_id}")
        events = list(
            InboundEvent.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=InboundStatus.RECEIVED)
            .order_by("id")
        )
        if not events:  # processed meanwhile (a second drainer, Redis down): look again
            return DrainResult(taken=len(ids), retries=[])
        account = ChannelAccount.objects.get(pk=account_id)
        cache = _BatchCache()
        done: list[tuple[InboundEvent, ProcessOutcome]] = []

        def one_by_one(event: InboundEvent) -> None:
            try:
                with transaction.atomic():
                    done.append((event, _event_apply(event, account, cache)))
            except Exception as exc:  # noqa: BLE001 - retried alone by its own task
                logger.warning("Inbound event %s failed in a drain: %s", event.pk, exc)
                cache.customers.clear()  # may hold rows created in the rolled-back savepoint
                failed.append((event.pk, f"{type(exc).__name__}: {exc}", exc))

        # Runs of deliveries holding only plain messages are applied together (arrival
        # order kept: any other delivery ends the run and is applied alone, in its place).
        run: list[tuple[InboundEvent, list[InboundMessage]]] = []
        for event in [*events, None]:
            plain = _plain_messages(event, account) if event is not None else None
            if plain is not None and event is not None:
                run.append((event, plain))
                continue
            if run:
                _run_apply(run, account, cache, done, one_by_one)
                run = []
            if event is not None:
                one_by_one(event)
        _events_mark_done(done)
        retries: list[tuple[int, float, int]] = []
        for event_id, error, failure in failed:
            final, attempts = inbound_event_fail(
                event_id=event_id, error=error, permanent=isinstance(failure, PermanentError)
            )
            if not final:
                delay = inbound_retry_delay(attempts)
                if isinstance(failure, RetryableError) and failure.retry_after:
                    delay = max(delay, failure.retry_after)
                retries.append((event_id, delay, attempts))
    return DrainResult(taken=len(events), retries=retries)


def _plain_messages(event: InboundEvent, account: ChannelAccount) -> list[InboundMessage] | None:
    """The delivery's messages when every item is a plain message, else None."""
    try:
        items = list(
            get_adapter(event.channel).parse(
                account, WebhookRequest(headers=event.headers, body=event.body_bytes)
            )
        )
    except Exception:  # noqa: BLE001 - the one-by-one path records the failure
        return None
    if items and all(_message_is_plain(event.channel, item) for item in items):
        return [item for item in items if isinstance(item, InboundMessage)]
    return None


def _run_apply(
    run: list[tuple[InboundEvent, list[InboundMessage]]],
    account: ChannelAccount,
    cache: _BatchCache,
    done: list[tuple[InboundEvent, ProcessOutcome]],
    one_by_one: Any,
) -> None:
    """Apply a run of plain deliveries in one savepoint; on any failure, one by one."""
    try:
        with transaction.atomic():
            recorded = _messages_ingest_bulk(
                get_adapter(account.channel), account, [m for _, ms in run for m in ms], cache
            )
    except Exception as exc:  # noqa: BLE001 - each delivery then succeeds or fails alone
        logger.warning("A bulk drain run of %d failed (%s); one by one", len(run), exc)
        cache.customers.clear()
        for event, _ in run:
            one_by_one(event)
        return
    flags = iter(recorded)
    for event, messages in run:
        outcome = ProcessOutcome()
        for _ in messages:
            if next(flags):
                outcome.created_messages += 1
            else:
                outcome.duplicates += 1
        done.append((event, outcome))


def inbound_event_fail(
    *, event_id: int, error: str, permanent: bool = False, expected_attempts: int | None = None
) -> tuple[bool, int]:
    """Count a failed attempt; returns (final, attempts). Final (``dead``) when the error
    is permanent or ``CHANNELS_INBOUND_MAX_ATTEMPTS`` attempts were made.
    ``expected_attempts`` (a retry task's): counted only while the event is still
    ``retrying`` with that count; else nothing is written and the answer is final (the
    sweep handed the event back to the drain meanwhile: the caller's retry chain ends)."""
    max_attempts = int(settings.CHANNELS_INBOUND_MAX_ATTEMPTS)
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.status == InboundStatus.PROCESSED:
            return True, 0
        if expected_attempts is not None and (
            event.status != InboundStatus.RETRYING or event.attempts != expected_attempts
        ):
            return True, event.attempts
        attempts = event.attempts + 1
        final = permanent or attempts >= max_attempts
        InboundEvent.objects.filter(pk=event_id).update(
            status=InboundStatus.DEAD if final else InboundStatus.RETRYING,
            error=error[:5000],
            attempts=attempts,
            claims=0,  # failed with the worker alive: a drain finished with it
            updated_at=timezone.now(),  # the sweep times the retry from here
        )
    return final, attempts


RETRY_DELAY_CAP_SECONDS = 300.0
RETRY_JITTER = 0.2  # each delay is drawn within ±20 % of its nominal value


def inbound_retry_delay(attempts: int) -> float:
    """The wait before the next attempt of an event failed ``attempts`` times: 2, 4, 8 …
    capped at 300 s, with jitter."""
    jitter = 1 - RETRY_JITTER + 2 * RETRY_JITTER * random.random()  # noqa: S311
    return min(RETRY_DELAY_CAP_SECONDS, 2.0**attempts) * jitter


def _retry_delay_longest(attempts: int) -> float:
    """The longest ``inbound_retry_delay(attempts)`` can draw."""
    return min(RETRY_DELAY_CAP_SECONDS, 2.0**attempts) * (1 + RETRY_JITTER)


def inbound_event_reprocess(*, event: InboundEvent, actor: Any = None) -> bool:
    """Admin re-drive of a dead (or stuck) event; with ``actor`` (a supervisor in the
    admin) the audit log says who re-drove it and from which status (a closed one is a
    supervisor's decision undone). False, nothing done, for an event whose body an
    erasure removed: nothing is left to process."""
    if not bytes(event.body or b""):
        return False
    was = event.status
    InboundEvent.objects.filter(pk=event.pk).update(
        status=InboundStatus.RETRYING, attempts=0, claims=0, error="", updated_at=timezone.now()
    )
    if actor is not None:
        audit_log_record(
            actor=actor,
            action="inbound_event.reprocess",
            object_type="channels_app.InboundEvent",
            object_id=event.pk,
            details={"channel": event.channel, "was": was},
        )
    transaction.on_commit(lambda: inbound_retry_enqueue(event.pk, attempts=0))
    return True


def inbound_event_release(*, event: InboundEvent, actor: Any) -> bool:
    """A supervisor releases a quarantined e-mail: it is processed as under policy
    ``mark`` (its message created, marked suspicious). False when it was not quarantined."""
    released = InboundEvent.objects.filter(pk=event.pk, status=InboundStatus.QUARANTINED).update(
        status=InboundStatus.RETRYING,
        attempts=0,
        error="",
        summary={**event.summary, "released_by": actor.get_username()},
        updated_at=timezone.now(),
    )
    if released:
        audit_log_record(
            actor=actor,
            action="inbound_event.release",
            object_type="channels_app.InboundEvent",
            object_id=event.pk,
            details={"channel": event.channel, "reasons": event.summary.get("quarantine_reasons")},
        )
        transaction.on_commit(lambda: inbound_retry_enqueue(event.pk, attempts=0))
    return bool(released)


#: What a supervisor may close unprocessed: dead letters and quarantined e-mail (nothing
#: will process them unless someone does).
CLOSABLE = (InboundStatus.DEAD, InboundStatus.QUARANTINED)
CLOSED_NOTE = "Closed unprocessed by a supervisor"


def inbound_event_close(*, event: InboundEvent, actor: Any) -> bool:
    """A supervisor decides a dead letter or a quarantined e-mail will not be processed
    (spam, a test, a message handled some other way): it becomes ``closed`` (not
    ``ignored``, which is an unknown event type; kept until the raw event retention purges
    it, like every processed delivery), the audit log says who, and a web chat visitor's
    file it names, still staged, is deleted after the commit.
    False when it was in no closable state (processed meanwhile, or re-driven)."""
    with transaction.atomic():
        rows = InboundEvent.objects.filter(pk=event.pk, status__in=CLOSABLE)
        names = inbound_events_staged_names(rows)
        was = event.status
        closed = rows.update(
            status=InboundStatus.CLOSED,
            processed_at=timezone.now(),
            error=f"{CLOSED_NOTE} ({actor.get_username()}); was {was}: {event.error}"[:2000],
            summary={**event.summary, "closed_by": actor.get_username(), "closed_from": was},
        )
        if closed:
            audit_log_record(
                actor=actor,
                action="inbound_event.close",
                object_type="channels_app.InboundEvent",
                object_id=event.pk,
                details={"channel": event.channel, "was": was},
            )
            staged_uploads_delete_on_commit(names)
    return bool(closed)


def _status_apply(channel: str, status: StatusUpdate) -> bool:
    if status.status not in ("sent", "delivered", "read", "failed"):
        logger.info("Ignoring %s status %r", channel, status.status)
        return True
    if status.watermark is not None:
        messages = list(
            Message.objects.filter(
                channel=channel,
                direction=Direction.OUTBOUND,
                kind=MessageKind.PUBLIC,
                ticket__origin_platform_id=status.recipient_id,
                sent_at__lte=status.watermark,
            ).exclude(channel_message_id=None)
        )
        for covered in messages:
            ticket_services.message_delivery_update(
                message=covered, status=status.status, at=status.timestamp
            )
        return True
    found = Message.objects.filter(
        channel=channel, channel_message_id=status.external_message_id
    ).first()
    if found is None:
        # a file's own message of a reply sent in parts: the status is the reply's (a file
        # that failed to reach the customer fails the reply, with the channel's words)
        found = selectors.reply_part_message_get(
            channel=channel,
            external_id=status.external_message_id,
            customer_external_id=status.recipient_id,
        )
    if found is None:
        return False
    ticket_services.message_delivery_update(
        message=found,
        status=status.status,
        at=status.timestamp,
        error=status.error,
        error_code=status.error_code,
    )
    return True


INBOUND_SWEEP_STALE_SECONDS = 120.0
#: Retrying events handed back to the drain per sweep (the next sweep takes the rest).
RETRY_SWEEP_BATCH = 1000


def inbound_event_sweep(*, stale_seconds: float = INBOUND_SWEEP_STALE_SECONDS) -> int:
    """Wake the drain of every account holding received events older than
    ``stale_seconds`` that were never processed (their wake was lost: the broker was down,
    a worker died mid-drain), and of every account holding ``retrying`` events whose next
    attempt is overdue by ``stale_seconds`` (their retry task was never queued or was lost:
    the broker was down after the failure was committed, a worker was killed); those are
    handed back to the drain first (``received`` again; see ``inbound_retries_overdue``).
    Returns how many accounts were woken. The beat runs it every minute with the default;
    a worker runs it with 0 each time it (re)connects to the broker (``support.celery``).
    Waking a drain that is already running costs one task that finds nothing left."""
    retried = inbound_retries_overdue(grace_seconds=stale_seconds)
    stale = timezone.now() - timedelta(seconds=stale_seconds)
    account_ids = set(
        InboundEvent.objects.filter(status=InboundStatus.RECEIVED, received_at__lt=stale)
        .order_by()  # not the model's ordering: one row per account
        .values_list("account_id", flat=True)
        .distinct()
    )
    account_ids.update(retried)
    for account_id in sorted(account_ids):
        inbound_drain_wake(account_id)
    return len(account_ids)


def _retry_overdue(now: datetime, grace_seconds: float) -> Q:
    """``retrying`` events whose next attempt should have started more than
    ``grace_seconds`` ago: the failure was recorded (``updated_at``) longer ago than the
    longest delay the retry schedule draws for its attempt count, plus the grace."""
    condition = Q()
    attempts = 0
    while 2.0**attempts < RETRY_DELAY_CAP_SECONDS:
        wait = _retry_delay_longest(attempts) + grace_seconds
        condition |= Q(attempts=attempts, updated_at__lt=now - timedelta(seconds=wait))
        attempts += 1
    wait = _retry_delay_longest(attempts) + grace_seconds
    return condition | Q(attempts__gte=attempts, updated_at__lt=now - timedelta(seconds=wait))


def inbound_retries_overdue(*, grace_seconds: float) -> set[int]:
    """Hand ``retrying`` events whose retry is overdue back to the drain (``received``,
    ``attempts`` and ``error`` kept) and return their accounts. An event a retry task is
    processing right now (its row locked) is skipped; a retry task that runs after the
    hand-over finds the event ``received`` (or done) and leaves it to the drain
    (``inbound_event_process(retry=True)``), so no event is processed by two paths."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            InboundEvent.objects.select_for_update(skip_locked=True)
            .filter(_retry_overdue(now, grace_seconds), status=InboundStatus.RETRYING)
            .order_by("id")
            .values_list("id", "account_id")[:RETRY_SWEEP_BATCH]
        )
        if not rows:
            return set()
        InboundEvent.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            status=InboundStatus.RECEIVED, updated_at=now
        )
    logger.warning(
        "%d retrying inbound event(s) whose retry was overdue handed back to the drain",
        len(rows),
    )
    return {account_id for _, account_id in rows}
