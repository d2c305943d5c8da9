"""Domain events through a transactional outbox.

Services call :func:`event_record` inside their transaction. After commit a relay task
delivers pending events to Channels groups (the live workbench) and to in-process
subscribers (other apps reacting to events, e.g. routing on ``ticket.created``).
A rolled-back change leaves no event; delivery is at least once, so subscribers must be
idempotent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from support.db import DATABASE_GONE_RETRY
from support.models import OutboxEvent
from support.redis_client import enqueue_once

logger = logging.getLogger(__name__)

Subscriber = Callable[[OutboxEvent], None]
_subscribers: dict[str, list[Subscriber]] = defaultdict(list)

ALL_EVENTS_GROUP = "events"
# An agent's teams, roles or active flag changed: live sockets re-check what it may see.
ACCESS_CHANGED_EVENT = "agent.access_changed"
RELAY_PENDING_KEY = "outbox:relay-pending"


def subscribe(event_type: str, handler: Subscriber) -> None:
    """Register ``handler`` for ``event_type`` (``"*"`` for all). Call from ``AppConfig.ready``."""
    if handler not in _subscribers[event_type]:
        _subscribers[event_type].append(handler)


def subscribers_for(event_type: str) -> list[Subscriber]:
    return [*_subscribers.get(event_type, []), *_subscribers.get("*", [])]


BatchSubscriber = Callable[[list[OutboxEvent]], None]
_batch_subscribers: dict[str, list[BatchSubscriber]] = defaultdict(list)


def subscribe_batch(event_type: str, handler: BatchSubscriber) -> None:
    """Register ``handler`` for every relay batch's events of ``event_type`` (in id order):
    for reactions that are cheaper once per batch, such as enqueuing one task for many
    messages instead of one each. If it raises, those events stay pending and come again."""
    if handler not in _batch_subscribers[event_type]:
        _batch_subscribers[event_type].append(handler)


def batch_subscribers_for(event_type: str) -> list[BatchSubscriber]:
    return list(_batch_subscribers.get(event_type, []))


#: Celery options of a short task a subscriber enqueues to do its work after the relay's
#: batch commits (``@shared_task(**SUBSCRIBER_TASK_OPTIONS)``): acknowledged once done,
#: retried when the database goes away (a restart, a failover, a deadlock's
#: ``OperationalError``) up to 3 times with jittered backoff of up to 2, 4, 8 s
#: (``DATABASE_GONE_RETRY``). The task must be idempotent.
SUBSCRIBER_TASK_OPTIONS: dict[str, Any] = {
    **DATABASE_GONE_RETRY,
    "bind": True,
    "acks_late": True,
    "max_retries": 3,
    "soft_time_limit": 30,
    "time_limit": 45,
}


def subscriber_task_enqueue(task: Any, *args: Any) -> None:
    """How a subscriber starts a Celery task (subscribers run inside the relay's
    transaction, with the batch's outbox rows locked).

    With a broker the message is published right away: publishing is not a call to an
    outside system, and a failed publish fails the subscriber, so the event stays pending
    and comes again (nothing lost; ``transaction.on_commit`` would lose it). When tasks run
    eagerly (tests, single-process demos) ``delay()`` would run the task right here, with
    the relay's transaction open across whatever it calls out to: it runs once the relay's
    batch commits instead, and a failure is logged as a worker would log it.
    """
    if not task.app.conf.task_always_eager:
        task.delay(*args)
        return

    def run_task() -> None:  # a named function: on_commit logs a failure by __qualname__
        task.delay(*args)

    transaction.on_commit(run_task, robust=True)


def event_time(value: datetime) -> str:
    """A time as event payloads write it: ISO 8601 in UTC with ``Z`` (``ticket.resolved``'s
    ``resolved_at``; the satisfaction survey keys its resolution with the same spelling)."""
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    aggregate_type: str
    aggregate_id: int | str
    payload: dict[str, Any]


def outbox_rows(events: list[NewEvent]) -> list[OutboxEvent]:
    """Unsaved outbox rows for ``events``: for a caller that writes them in its own batch
    (``support.db.rows_insert``) and then calls :func:`relay_after_commit`."""
    return [
        OutboxEvent(
            event_type=e.event_type,
            aggregate_type=e.aggregate_type,
            aggregate_id=str(e.aggregate_id),
            payload=e.payload,
        )
        for e in events
    ]


def relay_after_commit() -> None:
    # One callback per call; schedule_relay itself collapses them into one task through a
    # Redis flag (deduplicating across calls would break when a savepoint rolls back).
    transaction.on_commit(schedule_relay)


def events_record(events: list[NewEvent]) -> list[OutboxEvent]:
    """Write events (in order, one INSERT) in the caller's transaction; relay after commit."""
    rows = OutboxEvent.objects.bulk_create(outbox_rows(events))
    relay_after_commit()
    return rows


def event_record(
    event_type: str,
    *,
    aggregate_type: str,
    aggregate_id: int | str,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Write an event in the caller's transaction and schedule the relay after commit."""
    return events_record([NewEvent(event_type, aggregate_type, aggregate_id, payload)])[0]


def schedule_relay() -> None:
    """Enqueue one relay task unless one is already pending (the beat sweep is the safety net)."""
    from support.tasks import outbox_relay_task

    enqueue_once(
        RELAY_PENDING_KEY,
        outbox_relay_task.delay,
        seconds=5,
        failed="Could not schedule the outbox relay; the beat sweep will deliver",
    )
