"""Celery tasks: thin wrappers taking ids; every one is idempotent (natural keys)."""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, shared_task
from celery.exceptions import MaxRetriesExceededError, SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from calls import services
from calls.models import Call, PipelineStatus
from calls.services.sweeps import TRANSCRIBE_POLLS
from support.db import DATABASE_GONE, DATABASE_GONE_RETRY
from support.errors import PermanentError, RetryableError
from support.outbound import backoff_seconds
from tickets.context.models import ContextDeadLetterKind
from tickets.context.tasks import RETRYING as CONTEXT_RETRYING
from tickets.context.tasks import dead_letter_on_give_up

logger = logging.getLogger(__name__)


@shared_task(
    **DATABASE_GONE_RETRY,
    acks_late=True,
    max_retries=3,
    soft_time_limit=30,
    time_limit=60,
)
def call_event_process_task(event_id: int) -> str:
    """Apply one recorded event. The database going away (a restart, a failover) is
    retried with backoff; anything else that is not the record's fault (retries running
    out, an error it does not record, a time limit, a killed worker) leaves the event
    ``received``, with the error noted, and the beat sweep (``call_events_sweep_task``)
    queues it again a bounded number of times."""
    try:
        return services.call_event_process(event_id=event_id)
    except Exception as exc:  # the task boundary: noted, then raised
        services.call_event_attempt_failed(event_id=event_id, exc=exc)
        raise


@shared_task(soft_time_limit=60, time_limit=90)
def call_events_sweep_task(stale_seconds: float | None = None) -> int:
    """Every minute (beat ``calls-events-sweep``) and on each broker connection (0):
    call events still ``received`` whose processing was lost. Idempotent."""
    if stale_seconds is None:
        return services.call_events_sweep()
    return services.call_events_sweep(stale_seconds=stale_seconds)


@shared_task(soft_time_limit=60, time_limit=90)
def call_pipelines_sweep_task() -> int:
    """Every few minutes (beat ``calls-pipeline-sweep``): restart the chain of calls left
    in a non-final pipeline status (their chain was lost). Idempotent."""
    return services.call_pipelines_sweep()


def call_pipeline_start(call_id: int) -> None:
    """The per-call chain: transcription → analytics (persisted) → Salesforce.

    Each step returns early when its work is done or not yet possible, so the chain can
    be started again by any later event (Transcribe/S3 event, SNS notification, re-drive)
    and resumes where it stopped.
    """
    chain(
        call_transcribe_task.si(call_id),
        call_analyse_task.si(call_id),
        call_salesforce_case_task.si(call_id),
    ).apply_async()


def _fail(call_id: int, exc: Exception) -> None:
    logger.warning("Call %s pipeline failed: %s", call_id, exc)
    # updated_at: when it failed (the metrics count Data Automation failures by it).
    Call.objects.filter(pk=call_id).update(
        pipeline_status=PipelineStatus.FAILED,
        pipeline_error=str(exc)[:2000],
        updated_at=timezone.now(),
    )


def _fail_unexpected(task: Any, call_id: int, step: str, exc: Exception) -> None:
    """At a step's task boundary: an error the step does not handle (a bug such as a
    ``KeyError``, its soft time limit) ends the task for good (the steps retry only
    ``RetryableError``), so the call is failed with the reason, as ``_fail`` does: the
    admin's "Failed" filter lists it and "Re-run the pipeline" resumes it. Before, the call
    sat in its step with no error and the pipeline sweep restarted it for ever. The
    caller raises the error again (the worker logs its traceback; the chain stops).

    The database gone (a restart, a failover) is not the call's fault, and the update
    could not be written anyway: the call is left to the pipeline sweep, which restarts it
    a bounded number of times (``calls.services.sweeps.PIPELINE_REDRIVE``)."""
    if isinstance(exc, DATABASE_GONE):
        return
    if isinstance(exc, SoftTimeLimitExceeded):
        reason = f"{step}: did not finish within its time limit ({task.soft_time_limit} s)."
    else:
        reason = f"{step}: unexpected error {type(exc).__name__}: {exc}"
    _fail(call_id, RuntimeError(reason))


def _retries_spent(task: Any, call_id: int, exc: RetryableError) -> bool:
    """On a step's last retry, the call is failed with the reason (True), not left in its
    step for the pipeline sweep to restart every quarter of an hour without a word."""
    if task.request.retries < task.max_retries:
        return False
    _fail(call_id, RuntimeError(f"Gave up after {task.request.retries + 1} attempts: {exc}"))
    return True


@shared_task(
    bind=True, acks_late=True, max_retries=TRANSCRIBE_POLLS, soft_time_limit=60, time_limit=90
)
def call_transcribe_task(self, call_id: int) -> str:  # type: ignore[no-untyped-def]
    try:
        state = services.call_transcribe(call_id=call_id)
    except RetryableError as exc:
        if _retries_spent(self, call_id, exc):
            return "failed"
        raise self.retry(
            exc=exc,
            countdown=backoff_seconds(self.request.retries + 1, retry_after=exc.retry_after),
        ) from exc
    except PermanentError as exc:
        _fail(call_id, exc)
        return "failed"
    except Exception as exc:  # the task boundary: recorded on the call, then raised
        _fail_unexpected(self, call_id, "Transcription", exc)
        raise
    if state == "pending":
        try:
            raise self.retry(countdown=settings.CALLS_TRANSCRIBE_POLL_SECONDS)
        except MaxRetriesExceededError:
            # The polls ran out: the call would stay "transcribing" with nothing moving it.
            polls = self.max_retries
            minutes = polls * settings.CALLS_TRANSCRIBE_POLL_SECONDS / 60
            _fail(
                call_id,
                RuntimeError(
                    f"Still transcribing after {polls} polls ({minutes:g} minutes): the "
                    "transcription job did not finish; a new recording or result, or the "
                    'admin\'s "Re-run the pipeline", asks for it again.'
                ),
            )
            return "failed"
    return state


@shared_task(bind=True, acks_late=True, max_retries=5, soft_time_limit=120, time_limit=180)
def call_analyse_task(self, call_id: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return services.call_analyse(call_id=call_id) is not None
    except RetryableError as exc:
        if _retries_spent(self, call_id, exc):
            return False
        raise self.retry(
            exc=exc,
            countdown=backoff_seconds(self.request.retries + 1, retry_after=exc.retry_after),
        ) from exc
    except PermanentError as exc:
        _fail(call_id, exc)
        return False
    except Exception as exc:  # the task boundary: recorded on the call, then raised
        _fail_unexpected(self, call_id, "Analysis", exc)
        raise


@shared_task(
    **CONTEXT_RETRYING,  # the customer context's own tasks' retries (a database drop too)
    soft_time_limit=30,
    time_limit=60,
)
def call_interaction_record_task(self: Any, call_id: int) -> bool:
    """Idempotent: one customer-context entry per call (``call:<contact id>``). When it
    gives up (retries spent, an error it does not retry) it is recorded as a
    customer-context dead letter, for a supervisor to see and re-drive
    (docs/customer-context.md, "When background work gives up")."""
    with dead_letter_on_give_up(
        self,
        kind=ContextDeadLetterKind.INTERACTION,
        args=[call_id],
        customer=lambda: (
            Call.objects.filter(pk=call_id).values_list("customer_id", flat=True).first()
        ),
    ):
        return services.call_interaction_record(call_id=call_id)


@shared_task(bind=True, acks_late=True, soft_time_limit=30, time_limit=60)
def call_salesforce_case_task(self: Any, call_id: int) -> int | None:
    """Builds the Case delivery; the delivery engine sends it, recording every attempt
    and keeping a Case it could not send as a dead letter (``salesforce`` kind). An error
    before the delivery exists has nowhere else to be recorded: the call is failed with
    the reason (``_fail_unexpected``)."""
    try:
        delivery = services.call_salesforce_case(call_id=call_id)
    except Exception as exc:  # the task boundary: recorded on the call, then raised
        _fail_unexpected(self, call_id, "Salesforce Case", exc)
        raise
    return delivery.pk if delivery else None


@shared_task(soft_time_limit=30, time_limit=60)
def agent_alerts_sweep_task() -> int:
    return len(services.alerts_evaluate())
