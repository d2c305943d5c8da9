"""Celery tasks of the routing app (thin: each calls one service)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from routing import selectors, services
from support.errors import RetryableError

logger = logging.getLogger(__name__)

#: Worth another try: the database or a provider was briefly unavailable. Anything else
#: (a missing ticket, a bug) fails the task; the routing sweep below is the safety net.
ROUTING_RETRYABLE = (RetryableError, OperationalError, InterfaceError)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=ROUTING_RETRYABLE,
    retry_backoff=5,  # 5, 10, 20 s (jittered); longer outages are the sweep's
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=90,
    time_limit=120,
)
def route_ticket_task(self: object, ticket_id: int, attempt_key: str = "initial") -> int:
    """Idempotent: one decision per (ticket, attempt key)."""
    return services.routing_decide(ticket_id=ticket_id, attempt_key=attempt_key).pk


@shared_task(soft_time_limit=60, time_limit=90)
def routing_sweep_task() -> int:
    """Beat's safety net for "never unrouted": routing again for tickets still without a
    decision a few minutes after they were created (their task failed or was lost), at
    most ``ROUTING_SWEEP_BATCH`` per run. Each task expires unrun after one sweep
    interval, so a backed-up queue holds at most one sweep copy per ticket."""
    if not settings.ROUTING_ENABLED:
        return 0
    ids = list(
        selectors.tickets_unrouted().values_list("pk", flat=True)[: settings.ROUTING_SWEEP_BATCH]
    )
    for ticket_id in ids:
        route_ticket_task.apply_async((ticket_id,), expires=settings.ROUTING_SWEEP_SECONDS)
    if ids:
        logger.warning("Routing sweep: %s ticket(s) without a decision sent again", len(ids))
    return len(ids)


@shared_task(soft_time_limit=300, time_limit=360)
def routing_decision_purge_task() -> int:
    return services.routing_decision_purge()


@shared_task(soft_time_limit=30, time_limit=60)
def service_status_poll_task() -> int:
    return services.service_status_poll()
