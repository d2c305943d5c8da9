"""Celery tasks of the shared infrastructure (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task

from support import idempotency, retention, services


@shared_task(acks_late=True, max_retries=0, soft_time_limit=60, time_limit=90)
def outbox_relay_task() -> int:
    """Idempotent: delivered events are skipped; locked ones belong to another relay."""
    return services.outbox_relay()


@shared_task(soft_time_limit=300, time_limit=360)
def outbox_purge_task() -> int:
    return services.outbox_purge()


@shared_task(soft_time_limit=600, time_limit=660)
def raw_events_purge_task() -> dict[str, int]:
    """Idempotent and batched: deletes only done events past ``RAW_EVENT_RETENTION_DAYS``."""
    return retention.raw_events_purge()


@shared_task(soft_time_limit=300, time_limit=360)
def idempotency_keys_purge_task() -> int:
    """Idempotent and batched: deletes keys past ``IDEMPOTENCY_KEY_RETENTION_HOURS``."""
    return idempotency.idempotency_keys_purge()


@shared_task(soft_time_limit=45, time_limit=60, ignore_result=True)
def cloudwatch_metrics_publish_task() -> int:
    """Optional CloudWatch publishing (support/cloudwatch.py); values are point-in-time,
    so a failed run is not retried (the next one sends fresh values)."""
    from support.cloudwatch import cloudwatch_metrics_publish

    return cloudwatch_metrics_publish()
