"""Celery tasks of the customer context (thin: each calls one service)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task

from support.errors import RetryableError
from tickets.context import services

# Retried on transient errors with backoff; acknowledged after running (idempotent tasks).
RETRYING: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (RetryableError,),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_for_message_task(self: object, message_id: int) -> bool:
    """Idempotent: the interaction's natural key is ``message:<id>``."""
    return services.interaction_record_for_message(message_id=message_id)


@shared_task(
    **RETRYING,
    soft_time_limit=120,
    time_limit=180,
)
def interaction_record_for_messages_task(self: object, message_ids: list[int]) -> int:
    """Many messages (one relay batch); idempotent per message like the task above, so a
    retry after a partial run records only what is missing. Returns how many were new."""
    return sum(1 for pk in message_ids if services.interaction_record_for_message(message_id=pk))


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_reopen_task(self: object, event_id: int, ticket_id: int, at: str) -> bool:
    """Idempotent: the interaction's natural key is ``reopen:<event id>``."""
    return services.interaction_record_reopen(
        event_id=event_id, ticket_id=ticket_id, at=datetime.fromisoformat(at)
    )


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_for_csat_task(self: object, ticket_id: int, submitted_at: str) -> bool:
    """Idempotent: the interaction's natural key is ``csat:<ticket>:<time of the answer>``."""
    return services.interaction_record_for_csat(
        ticket_id=ticket_id, submitted_at=datetime.fromisoformat(submitted_at)
    )


@shared_task(soft_time_limit=600, time_limit=660)
def interaction_purge_task() -> int:
    return services.interaction_purge()
