"""Celery tasks: thin, take ids, call one service; idempotent (finished work returns)."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task

from support.errors import RetryableError

logger = logging.getLogger(__name__)

# A sync or an S3 event whose source another run holds (``SourceBusy``) gives its worker
# back and tries again this often, this many times: an hour, the sync task's hard limit.
BUSY_RETRY_SECONDS = 60
BUSY_MAX_RETRIES = 60


def _busy_countdown() -> float:
    return BUSY_RETRY_SECONDS * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=BUSY_MAX_RETRIES,
    soft_time_limit=3300,
    time_limit=3600,
)
def kb_sync_task(self: Any, job_id: int) -> int:
    from knowledge.services import SourceBusy, job_fail, job_run

    try:
        job_run(job_id)
    except SourceBusy as exc:
        if self.request.retries >= BUSY_MAX_RETRIES:
            job_fail(
                job_id,
                error=f"not run: {exc.message} after {self.request.retries + 1} tries; "
                "start the sync again when it has finished",
            )
            return job_id
        raise self.retry(exc=exc, countdown=_busy_countdown()) from exc
    return job_id


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(RetryableError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=600,
    time_limit=660,
)
def kb_object_event_task(self: Any, event_id: int, busy_tries: int = 0) -> None:
    from knowledge.services import SourceBusy, object_event_error, object_event_process

    try:
        object_event_process(event_id)
    except SourceBusy as exc:
        # The event goes in after the sync holding its source: a new task later, with a
        # count of its own (the retries above are for errors). Still busy after an hour,
        # like an event whose retries ran out or whose task was lost: it stays unprocessed
        # with the reason, and the event sweep (kb_object_events_sweep_task) queues it
        # again, a bounded number of times. S3 does not deliver an answered event again.
        if busy_tries >= BUSY_MAX_RETRIES:
            logger.error("kb event %s not applied after an hour: %s", event_id, exc.message)
            object_event_error(
                event_id, error=f"not applied: {exc.message} for an hour ({busy_tries + 1} tries)"
            )
            return
        kb_object_event_task.apply_async(
            (event_id,), {"busy_tries": busy_tries + 1}, countdown=_busy_countdown()
        )


@shared_task(bind=True, acks_late=True, max_retries=0, soft_time_limit=600, time_limit=660)
def kb_upload_task(self: Any, job_id: int) -> int:
    """Ingest an asynchronous upload (``Prefer: respond-async``). Idempotent: the job is
    claimed before it runs, so a redelivered copy finds it taken (or finished) and
    returns; a run killed midway leaves its job to the stale-job sweep."""
    from knowledge.services import upload_job_run

    upload_job_run(job_id)
    return job_id


@shared_task(soft_time_limit=60, time_limit=90)
def kb_jobs_sweep_task() -> int:
    """Beat: finish as failed the sync and ingest jobs nobody runs any more (their worker
    was killed, their task lost). Idempotent."""
    from knowledge.services import jobs_sweep

    return jobs_sweep()


@shared_task(soft_time_limit=60, time_limit=90)
def kb_object_events_sweep_task(grace_seconds: float | None = None) -> int:
    """Beat (and on connecting to the broker, with no grace): queue again the S3 events
    recorded but never processed, give up on those re-driven too often. Idempotent."""
    from knowledge.services import object_events_sweep

    return object_events_sweep(grace_seconds=grace_seconds)


@shared_task(acks_late=True, max_retries=0, soft_time_limit=300, time_limit=330)
def kb_common_lexemes_count_task() -> int:
    """Count the knowledge base's common words again (idempotent: the count replaces the
    last one)."""
    from knowledge.services import common_lexemes_count_run

    return common_lexemes_count_run()
