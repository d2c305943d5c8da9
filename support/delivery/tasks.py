"""Celery tasks of the delivery engine (thin: each calls one service).

``delivery_attempt_task`` is safe to run twice and to acknowledge late: a delivery is
claimed with a lease, so a second copy of the task finds it leased or finished and returns.
Its hard time limit (90 s) is below ``DELIVERY_LEASE_SECONDS`` (120 s by default), so a
lease that expired belongs to a worker that is gone.
"""

from __future__ import annotations

from celery import shared_task

from support.delivery import services

ATTEMPT_SOFT_TIME_LIMIT = 60
ATTEMPT_TIME_LIMIT = 90


@shared_task(
    acks_late=True,
    max_retries=0,
    soft_time_limit=ATTEMPT_SOFT_TIME_LIMIT,
    time_limit=ATTEMPT_TIME_LIMIT,
)
def delivery_attempt_task(delivery_id: int, expected_attempts: int | None = None) -> str:
    """One attempt (the next one is scheduled by the service after commit)."""
    report = services.delivery_attempt(delivery_id=delivery_id, expected_attempts=expected_attempts)
    return report.outcome or ("paused" if report.paused_until else "skipped")


@shared_task(soft_time_limit=60, time_limit=90)
def delivery_sweep_task(grace_seconds: float | None = None) -> int:
    """Beat: every due or never-enqueued delivery gets an attempt task."""
    return services.deliveries_sweep(grace_seconds=grace_seconds)


@shared_task(soft_time_limit=600, time_limit=660)
def deliveries_purge_task() -> int:
    """Beat (hourly): idempotent and batched; deletes the deliveries that finished more
    than ``DELIVERY_RETENTION_DAYS`` ago and nothing can still act on."""
    return services.deliveries_purge().deleted
