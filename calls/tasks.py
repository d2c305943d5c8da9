"""Celery tasks: thin wrappers taking ids; every one is idempotent (natural keys)."""

from __future__ import annotations

import logging

from celery import chain, shared_task
from django.conf import settings
from django.utils import timezone

from calls import services
from calls.models import Call, PipelineStatus
from support.errors import PermanentError, RetryableError
from support.outbound import backoff_seconds

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, max_retries=3, soft_time_limit=30, time_limit=60)
def call_event_process_task(event_id: int) -> str:
    return services.call_event_process(event_id=event_id)


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


@shared_task(bind=True, acks_late=True, max_retries=120, soft_time_limit=60, time_limit=90)
def call_transcribe_task(self, call_id: int) -> str:  # type: ignore[no-untyped-def]
    try:
        state = services.call_transcribe(call_id=call_id)
    except RetryableError as exc:
        raise self.retry(
            exc=exc,
            countdown=backoff_seconds(self.request.retries + 1, retry_after=exc.retry_after),
        ) from exc
    except PermanentError as exc:
        _fail(call_id, exc)
        return "failed"
    if state == "pending":
        raise self.retry(countdown=settings.CALLS_TRANSCRIBE_POLL_SECONDS)
    return state


@shared_task(bind=True, acks_late=True, max_retries=5, soft_time_limit=120, time_limit=180)
def call_analyse_task(self, call_id: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return services.call_analyse(call_id=call_id) is not None
    except RetryableError as exc:
        raise self.retry(
            exc=exc,
            countdown=backoff_seconds(self.request.retries + 1, retry_after=exc.retry_after),
        ) from exc
    except PermanentError as exc:
        _fail(call_id, exc)
        return False


@shared_task(acks_late=True, soft_time_limit=30, time_limit=60)
def call_salesforce_case_task(call_id: int) -> int | None:
    delivery = services.call_salesforce_case(call_id=call_id)
    return delivery.pk if delivery else None


@shared_task(soft_time_limit=30, time_limit=60)
def agent_alerts_sweep_task() -> int:
    return len(services.alerts_evaluate())
