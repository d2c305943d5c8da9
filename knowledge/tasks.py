"""Celery tasks: thin, take ids, call one service; idempotent (finished work returns)."""

from __future__ import annotations

from celery import shared_task

from support.errors import RetryableError


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=3300,
    time_limit=3600,
)
def kb_sync_task(self: object, job_id: int) -> int:
    from knowledge.services import job_run

    job_run(job_id)
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
def kb_object_event_task(self: object, event_id: int) -> None:
    from knowledge.services import object_event_process

    object_event_process(event_id)


@shared_task(acks_late=True, max_retries=0, soft_time_limit=300, time_limit=330)
def kb_common_lexemes_count_task() -> int:
    """Count the knowledge base's common words again (idempotent: the count replaces the
    last one)."""
    from knowledge.services import common_lexemes_count_run

    return common_lexemes_count_run()
