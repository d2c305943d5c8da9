"""The two backstops of the calls app: call events whose processing was lost, and call
pipelines whose chain was lost. Each is run by the beat (and the first on each broker
connection, ``support.celery.ON_CONNECT_TASKS``), bounded per run, and idempotent."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from calls.models import Call, CallEvent, EventStatus, PipelineStatus
from calls.services.salesforce import SALESFORCE_KIND
from support.delivery.models import Delivery
from support.models import DeliveryStatus
from support.sweeps import RedrivePolicy, redrive_queue

logger = logging.getLogger(__name__)

#: A call event is normally applied within seconds of being recorded (its task is queued
#: after the commit); one still ``received`` after this long lost its task.
EVENTS_SWEEP_STALE_SECONDS = 120.0
EVENTS_SWEEP_BATCH = 500
#: After the sweep queued an event again it waits this long before the next time (on
#: connect too, where there is no age limit: a worker reconnecting often, or the beat's
#: sweeps queued while the workers were down and run all at once, do not pile duplicate
#: tasks behind the one still waiting in the queue), doubled at each re-drive: 2, 4, 8,
#: 16, 32 minutes (on connect 1, 2, 4, 8, 16), so a backed-up queue has about an hour
#: before an event waiting in it is given up.
EVENTS_SWEEP_REDRIVE_SECONDS = 120.0
EVENTS_SWEEP_REDRIVE_FLOOR_SECONDS = 60.0
#: Re-drives after which an event still ``received`` is given up: ``failed``, with the
#: reason, a dead letter (``support_call_events_failed``, the admin's re-drive).
EVENTS_SWEEP_MAX_REDRIVES = 5

#: A pipeline step normally moves the call on within minutes (analysis retries included);
#: a call in a non-final status not updated for this long lost its chain. A call being
#: transcribed is given the whole polling window on top (``TRANSCRIBE_POLLS``).
PIPELINE_SWEEP_STALE_SECONDS = 900.0
PIPELINE_SWEEP_BATCH = 100
#: How many times ``call_transcribe_task`` asks a running transcription job for its result.
TRANSCRIBE_POLLS = 120
#: Restarts after which a call the sweep keeps finding stalled is given up: ``failed``,
#: with the reason (the admin's "Failed" filter and "Re-run the pipeline"). Each is 15, 30,
#: 60, then 120 minutes after the one before (a transcribing call: at least the polling
#: window), so a call whose chain dies every time (a killed worker, a hard time limit, the
#: database gone) is given up about four hours after it last moved.
PIPELINE_SWEEP_MAX_RESTARTS = 4


#: The re-drives of call events: 2, 4, 8, 16, 32 minutes apart (on connect 1, 2, 4, 8,
#: 16), given up after 5.
EVENTS_REDRIVE = RedrivePolicy(
    wait_seconds=EVENTS_SWEEP_REDRIVE_SECONDS,
    floor_seconds=EVENTS_SWEEP_REDRIVE_FLOOR_SECONDS,
    max_redrives=EVENTS_SWEEP_MAX_REDRIVES,
    backoff=2.0,
)
#: The reason of a give-up when the event's tries recorded no error.
EVENTS_GIVE_UP_DEFAULT = (
    "its processing never finished (an error it does not record, a time limit or a "
    "killed worker: see the worker's log)"
)
#: The restarts of call pipelines: 15, 30, 60, 120 minutes apart, given up after 4. The
#: floor is the wait itself: this sweep is not sent on broker connections.
PIPELINE_REDRIVE = RedrivePolicy(
    wait_seconds=PIPELINE_SWEEP_STALE_SECONDS,
    floor_seconds=PIPELINE_SWEEP_STALE_SECONDS,
    max_redrives=PIPELINE_SWEEP_MAX_RESTARTS,
    backoff=2.0,
)


def call_events_sweep(*, stale_seconds: float = EVENTS_SWEEP_STALE_SECONDS) -> int:
    """Queue again the processing of call events still ``received`` ``stale_seconds``
    after they were recorded (oldest first, at most ``EVENTS_SWEEP_BATCH``): their task
    failed (the database went away past its retries, an error it does not record, a time
    limit, a killed worker) or was never queued (the broker was down after the commit).
    The sender had its 2xx and will not send again. ``call_event_process`` claims the
    event (row lock, then status ``received`` checked), so an event processed twice at
    once is applied once.

    The re-drives follow ``EVENTS_REDRIVE`` (``support.sweeps``): each is counted
    (``attempts``, ``attempted_at``) before its task is queued, and the next one waits
    (``EVENTS_SWEEP_REDRIVE_SECONDS``, doubled each time, at least
    ``EVENTS_SWEEP_REDRIVE_FLOOR_SECONDS`` even on connect); an event re-driven
    ``EVENTS_SWEEP_MAX_REDRIVES`` times and still ``received`` after the last wait is
    marked ``failed`` with the reason, so a few events that can never be applied neither
    fill every batch nor are queued forever. When the broker refuses a task the run
    stops (logged; the next one goes on). Returns how many were queued."""
    now = timezone.now()
    rows = list(
        _call_events_due(stale_seconds=stale_seconds, now=now).values_list(
            "id", "attempts", "error"
        )[:EVENTS_SWEEP_BATCH]
    )
    for pk, n, error in rows:
        if EVENTS_REDRIVE.spent(n):
            _call_event_give_up(pk, n, error, now)
    queued = redrive_queue(
        CallEvent.objects.filter(status=EventStatus.RECEIVED),
        [pk for pk, n, _ in rows if not EVENTS_REDRIVE.spent(n)],
        queue=_call_event_queue,
        now=now,
        what="Call events",
        due=EVENTS_REDRIVE.due_q(now, stale_seconds),
    )
    if queued:
        logger.warning("%d received call event(s) queued again by the sweep", len(queued))
    return len(queued)


def _call_event_queue(pk: int) -> None:
    from calls.tasks import call_event_process_task

    call_event_process_task.delay(pk)


def _call_events_due(*, stale_seconds: float, now: datetime) -> QuerySet[CallEvent]:
    """Events still ``received`` ``stale_seconds`` after they came (on connect, 0: no age
    limit), never re-driven or whose wait after their last re-drive (or a supervisor's,
    which sets attempts back to 0) is over; oldest first (partial index
    ``callevent_received_idx``)."""
    stale = now - timedelta(seconds=stale_seconds)
    return CallEvent.objects.filter(
        EVENTS_REDRIVE.due_q(now, stale_seconds),
        status=EventStatus.RECEIVED,
        created_at__lt=stale,
    ).order_by("created_at", "id")


def _call_event_give_up(pk: int, attempts: int, error: str, now: datetime) -> None:
    reason = EVENTS_REDRIVE.give_up_reason(attempts, error, EVENTS_GIVE_UP_DEFAULT)
    updated = CallEvent.objects.filter(pk=pk, status=EventStatus.RECEIVED).update(
        status=EventStatus.FAILED, error=reason, processed_at=now, updated_at=now
    )
    if updated:
        logger.error("Call event %s not applied: %s", pk, reason)


def _transcribing_stale_seconds() -> float:
    return PIPELINE_SWEEP_STALE_SECONDS + TRANSCRIBE_POLLS * settings.CALLS_TRANSCRIBE_POLL_SECONDS


def call_pipelines_stalled(now: datetime | None = None) -> QuerySet[Call]:
    """Calls whose pipeline stopped short of a final status with nothing to move it on
    (see ``call_pipelines_sweep``), whether the sweep restarted them already or not: a
    restart leaves ``updated_at`` as it was, so a call stays here until a step moves it on
    (or the sweep gives it up). ``support_calls_stalled`` counts them."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=PIPELINE_SWEEP_STALE_SECONDS)
    polled_out = now - timedelta(seconds=_transcribing_stale_seconds())
    # received: only calls whose chain was started (a contact trace record or a recording
    # notification was applied); a call known from contact events alone, or a result
    # that came before its record, waits for the record.
    started = ~Q(raw={}) | ~Q(s3_input_uri="")
    has_input = ~Q(s3_output_uri="")
    if settings.CALLS_TRANSCRIPTION_BACKEND != "local":
        has_input |= ~Q(s3_input_uri="") | ~Q(recording_location="")
    condition = (
        Q(pipeline_status=PipelineStatus.RECEIVED, updated_at__lt=stale) & started
        | Q(pipeline_status=PipelineStatus.TRANSCRIBED, updated_at__lt=stale)
        | Q(pipeline_status=PipelineStatus.TRANSCRIBING, updated_at__lt=polled_out)
        # What it waited for came (a result, a recording) but its chain was lost.
        | Q(pipeline_status=PipelineStatus.AWAITING_RECORDING, updated_at__lt=stale) & has_input
    )
    if settings.SALESFORCE_ENABLED:
        # analysed is final while Salesforce is off. With it on, a Case delivery still
        # open or dead belongs to the delivery engine (and to staff, as a dead letter).
        case_owned = Delivery.objects.filter(
            target_kind=SALESFORCE_KIND,
            subject_type="call",
            subject_id=Cast(OuterRef("pk"), output_field=Delivery._meta.get_field("subject_id")),
            payload__sobject="Case",
        ).exclude(status=DeliveryStatus.SUCCEEDED)
        condition |= Q(pipeline_status=PipelineStatus.ANALYSED, updated_at__lt=stale) & ~Q(
            Exists(case_owned)
        )
    return Call.objects.filter(condition)


def call_pipelines_sweep() -> int:
    """Start the chain again (``call_pipeline_start``) of calls left in a non-final
    pipeline status past ``PIPELINE_SWEEP_STALE_SECONDS`` (a call being transcribed: past
    the polling window too), oldest first, at most ``PIPELINE_SWEEP_BATCH`` a run: the
    chain was never queued (the broker was down at the commit), a worker was killed, a
    hard time limit, or the database went away under a step. (A step that fails on an
    error of its own fails the call with the reason, ``calls.tasks``.) Every step is
    idempotent and resumes where the call stopped; the thresholds are longer than a
    running chain leaves a call unchanged, so a chain still running is not doubled.

    The restarts follow ``PIPELINE_REDRIVE`` (``support.sweeps``, as call events): each is
    counted on the call (``attempts``, ``attempted_at``) before its chain is queued, the
    next one waits 15, 30, 60, then 120 minutes (a transcribing call: at least the polling
    window, as its restarted chain polls the job again), and a call restarted
    ``PIPELINE_SWEEP_MAX_RESTARTS`` times that is still stalled after the last wait is
    given up: ``failed``, with the reason. A restart does not touch ``updated_at`` (the
    call did not move), so ``support_calls_stalled`` keeps counting a restarted call
    until a step moves it on or it is given up, rather than reading 0 after every run.
    When the broker refuses a chain the run stops (logged; the next one goes on). Returns
    how many were restarted."""
    now = timezone.now()
    due = _pipelines_due_q(now)
    rows = list(
        call_pipelines_stalled(now)
        .filter(due)
        .order_by("updated_at", "id")
        .values_list("id", "attempts", "pipeline_status")[:PIPELINE_SWEEP_BATCH]
    )
    for pk, n, status in rows:
        if PIPELINE_REDRIVE.spent(n):
            _call_pipeline_give_up(pk, n, status, now=now, due=due)
    restarted = redrive_queue(
        call_pipelines_stalled(now),
        [pk for pk, n, _ in rows if not PIPELINE_REDRIVE.spent(n)],
        queue=_pipeline_start,
        now=now,
        what="Call pipelines",
        due=due,
    )
    if restarted:
        logger.warning(
            "%d call pipeline(s) left in a non-final status restarted by the sweep: %s",
            len(restarted),
            restarted,
        )
    return len(restarted)


def _pipelines_due_q(now: datetime) -> Q:
    """Stalled calls the sweep may restart now: never restarted (since the chain was last
    started by anything else), or whose wait after their last restart is over; a
    transcribing call also not within the polling window after it (its restarted chain
    is polling the job)."""
    polling = now - timedelta(seconds=_transcribing_stale_seconds())
    not_polling = (
        ~Q(pipeline_status=PipelineStatus.TRANSCRIBING)
        | Q(attempted_at__isnull=True)
        | Q(attempted_at__lt=polling)
    )
    return PIPELINE_REDRIVE.due_q(now, PIPELINE_SWEEP_STALE_SECONDS) & not_polling


def _pipeline_start(pk: int) -> None:
    from calls.tasks import call_pipeline_start

    call_pipeline_start(pk)


def _call_pipeline_give_up(pk: int, attempts: int, status: str, *, now: datetime, due: Q) -> None:
    label = PipelineStatus(status).label.lower()
    reason = PIPELINE_REDRIVE.give_up_reason(
        attempts,
        "",
        f"the call stayed {label} after each restart: its chain never finished (a killed "
        "worker, a hard time limit or the database gone; see the workers' log)",
    )
    updated = (
        call_pipelines_stalled(now)
        .filter(due, pk=pk, attempts=attempts)
        .update(
            pipeline_status=PipelineStatus.FAILED,
            pipeline_error=reason,
            updated_at=now,
        )
    )
    if updated:
        logger.error("Call %s pipeline given up: %s", pk, reason)
