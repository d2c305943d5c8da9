"""Celery tasks of the routing app (thin: each calls one service)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from routing import selectors, services
from support.errors import RetryableError
from support.outbound import backoff_seconds

logger = logging.getLogger(__name__)

#: Worth another try at once: the database or a provider was briefly unavailable. After
#: the task's own retries, and for anything else, the failure is recorded
#: (``services.routing_failure_record``): a permanent one (the ticket's own data) is not
#: swept again, a transient one is, backing off. The routing sweep below is the safety net.
ROUTING_RETRYABLE = (RetryableError, OperationalError, InterfaceError)
RETRY_BACKOFF_BASE = 5.0  # 5, 10, 20 s (jittered); longer outages are the sweep's
RETRY_BACKOFF_CAP = 60.0


@shared_task(bind=True, acks_late=True, max_retries=3, soft_time_limit=90, time_limit=120)
def route_ticket_task(self: Any, ticket_id: int, attempt_key: str = "initial") -> int:
    """Idempotent: one decision per (ticket, attempt key)."""
    try:
        return services.routing_decide(ticket_id=ticket_id, attempt_key=attempt_key).pk
    except ROUTING_RETRYABLE as exc:
        _retry_while_allowed(self, exc)
        _failure_record(ticket_id, exc)
        raise
    except Exception as exc:  # the task boundary: recorded for the sweep, then raised
        _failure_record(ticket_id, exc)
        raise


@shared_task(bind=True, acks_late=True, max_retries=3, soft_time_limit=90, time_limit=120)
def routing_customer_text_decide_task(self: Any, ticket_id: int, message_id: int) -> int | None:
    """Idempotent: one decision per ticket under ``CUSTOMER_TEXT_ATTEMPT``. Its failures
    are not the sweep's (the ticket has a decision, held for a person's review): after
    its retries they are logged, and the ticket stays in review."""
    try:
        decision = services.routing_customer_text_decide(ticket_id=ticket_id, message_id=message_id)
    except ROUTING_RETRYABLE as exc:
        _retry_while_allowed(self, exc)
        logger.error(
            "Routing ticket %s again on message %s failed; it stays in review: %s",
            ticket_id,
            message_id,
            exc,
        )
        raise
    return decision.pk if decision is not None else None


def _retry_while_allowed(task: Any, exc: BaseException) -> None:
    """Retry ``task`` later (backoff, a provider's ``retry_after`` honoured) while it has
    retries left; returns when it has none, for the caller to record and raise."""
    if task.request.retries < task.max_retries:
        countdown = backoff_seconds(
            task.request.retries + 1,
            base=RETRY_BACKOFF_BASE,
            cap=RETRY_BACKOFF_CAP,
            retry_after=getattr(exc, "retry_after", None),
        )
        raise task.retry(exc=exc, countdown=countdown) from exc


def _failure_record(ticket_id: int, exc: BaseException) -> None:
    try:
        services.routing_failure_record(ticket_id=ticket_id, exc=exc)
    except DatabaseError as db_exc:  # the database is away: the sweep finds it unrecorded
        logger.warning("Routing ticket %s failed (%s); not recorded: %s", ticket_id, exc, db_exc)


@shared_task(soft_time_limit=60, time_limit=90)
def routing_sweep_task() -> int:
    """Beat's safety net for "never unrouted": routing again for tickets still without a
    decision a few minutes after they were created (their task failed or was lost), up to
    the look-back's age, and for older ones whose routing failed for a passing reason (an
    outage or a refused credential that outlasted the look-back), at most
    ``ROUTING_SWEEP_BATCH`` per run, oldest first: not those whose routing failed for
    good, nor, until their backoff has passed (at most an hour), those whose routing
    failed lately (``selectors.tickets_to_sweep``). Each task expires unrun after one
    sweep interval, so a backed-up queue holds at most one sweep copy per ticket."""
    if not settings.ROUTING_ENABLED:
        return 0
    ids = list(
        selectors.tickets_to_sweep().values_list("pk", flat=True)[: settings.ROUTING_SWEEP_BATCH]
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
def service_status_poll_task() -> int | None:
    """Enqueue this minute's poll of the status endpoint (the delivery's id, or None)."""
    delivery = services.service_status_poll()
    return delivery.pk if delivery is not None else None
