"""Celery tasks of the customer context (thin: each calls one service).

Work that gives up (its retries spent, or an error it does not retry) is recorded as a
dead letter (``dead_letter_on_give_up``) for a supervisor to see and re-drive, not only
logged: an entry missing from a customer's history would otherwise go unnoticed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from celery import shared_task
from django.db import DatabaseError

from support.db import DATABASE_GONE
from support.errors import RetryableError
from tickets.context import services
from tickets.context.models import ContextDeadLetterKind
from tickets.context.selectors import message_ticket_id_get

logger = logging.getLogger(__name__)

# Retried on transient errors with backoff; acknowledged after running (idempotent tasks).
# The database going away (a restart, a failover) is such an error too: without its retries
# a failover gave the work up at once, and the dead letter could not be written either (the
# database being away), so the entry was lost with a log line. Backoff of up to 2, 4, 8,
# 16, 32 then 60 s: 8 retries cover about four minutes, longer than a Multi-AZ failover.
RETRYING: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (RetryableError, *DATABASE_GONE),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


def gives_up(task: Any, exc: BaseException) -> bool:
    """Whether ``exc`` ends ``task``'s work for good: an error it does not retry (not in
    its ``autoretry_for``: a permanent error, a bug, its time limit), or its last
    retry's."""
    retried = tuple(getattr(task, "autoretry_for", None) or ())
    if not isinstance(exc, retried):
        return True
    return task.max_retries is not None and task.request.retries >= task.max_retries


@contextmanager
def dead_letter_on_give_up(
    task: Any,
    *,
    kind: str,
    args: list[Any],
    name: str = "",
    ticket: Callable[[], int | None] | None = None,
    customer: Callable[[], int | None] | None = None,
) -> Iterator[None]:
    """Around a task's work: when it gives up (``gives_up``), record it as a dead letter
    (``services.context_dead_letter_record``: the task ``name``, default ``task``'s own,
    with ``args``, which a re-drive queues again; ``ticket`` and ``customer`` say whose,
    read only then), and raise the error again (the worker logs it). A retried error
    passes through untouched. Recording needs the database: when it is away too, the
    give-up is logged (with what a person needs to re-drive it by hand)."""
    try:
        yield
    except Exception as exc:  # the task boundary: recorded when it gives up, then raised
        if gives_up(task, exc):
            task_name = name or task.name
            try:
                services.context_dead_letter_record(
                    kind=kind,
                    task=task_name,
                    args=args,
                    error=f"{type(exc).__name__}: {exc}",
                    ticket_id=ticket() if ticket else None,
                    customer_id=customer() if customer else None,
                )
            except DatabaseError:
                logger.exception("Could not record that %s%s gave up", task_name, args)
        raise


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_for_message_task(self: Any, message_id: int) -> bool:
    """Idempotent: the interaction's natural key is ``message:<id>``."""
    with dead_letter_on_give_up(
        self,
        kind=ContextDeadLetterKind.INTERACTION,
        args=[message_id],
        ticket=lambda: message_ticket_id_get(message_id=message_id),
    ):
        return services.interaction_record_for_message(message_id=message_id)


@shared_task(
    **RETRYING,
    soft_time_limit=120,
    time_limit=180,
)
def interaction_record_for_messages_task(self: Any, message_ids: list[int]) -> int:
    """Many messages (one relay batch); idempotent per message like the task above, so a
    retry after a partial run records only what is missing. Returns how many were new.
    On its last try a message that fails is recorded as a dead letter of its own (the
    task above, which a re-drive queues) and the others are still recorded; the first
    such error is raised at the end."""
    new = 0
    gave_up: list[Exception] = []
    for pk in message_ids:
        try:
            with dead_letter_on_give_up(
                self,
                kind=ContextDeadLetterKind.INTERACTION,
                args=[pk],
                name=interaction_record_for_message_task.name,
                ticket=partial(message_ticket_id_get, message_id=pk),
            ):
                new += services.interaction_record_for_message(message_id=pk)
        except Exception as exc:  # the task boundary
            if not gives_up(self, exc):
                raise  # the batch again: the messages done are found done
            gave_up.append(exc)
    if gave_up:
        raise gave_up[0]
    return new


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_reopen_task(self: Any, event_id: int, ticket_id: int, at: str) -> bool:
    """Idempotent: the interaction's natural key is ``reopen:<event id>``."""
    with dead_letter_on_give_up(
        self,
        kind=ContextDeadLetterKind.INTERACTION,
        args=[event_id, ticket_id, at],
        ticket=lambda: ticket_id,
    ):
        return services.interaction_record_reopen(
            event_id=event_id, ticket_id=ticket_id, at=datetime.fromisoformat(at)
        )


@shared_task(
    **RETRYING,
    soft_time_limit=30,
    time_limit=60,
)
def interaction_record_for_csat_task(self: Any, ticket_id: int, submitted_at: str) -> bool:
    """Idempotent: the interaction's natural key is ``csat:<ticket>:<time of the answer>``."""
    with dead_letter_on_give_up(
        self,
        kind=ContextDeadLetterKind.INTERACTION,
        args=[ticket_id, submitted_at],
        ticket=lambda: ticket_id,
    ):
        return services.interaction_record_for_csat(
            ticket_id=ticket_id, submitted_at=datetime.fromisoformat(submitted_at)
        )


@shared_task(soft_time_limit=600, time_limit=660)
def interaction_purge_task() -> int:
    return services.interaction_purge()
