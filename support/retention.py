"""Retention of raw inbound events: what webhooks and AWS delivered, kept exactly as it
arrived (bodies, headers, payloads: personal data), is deleted ``RAW_EVENT_RETENTION_DAYS``
after it was processed.

Each app that keeps raw events registers a purger (``register_raw_event_purger``, in its
``AppConfig.ready()``); the hourly beat task ``support.tasks.raw_events_purge_task`` runs
them all. A purger deletes only events that are done with (processed, ignored, refused as
malformed, or closed unprocessed by a supervisor) and older than the cutoff, in batches,
and returns how many it deleted: running it twice deletes nothing more (idempotent).
Events not processed yet and dead letters awaiting a re-drive are never purged: deleting
them would lose a customer's message that staff can still recover. Dead letters older
than the cutoff are counted and logged so that someone re-drives or discards them (an
erasure blanks them anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

BATCH = 1000
MAX_BATCHES = 200  # per purger and run: 200k rows, then the next run goes on


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    dead_letters_kept: int = 0  # older than the cutoff, awaiting a re-drive


RawEventPurger = Callable[[datetime, int, int], PurgeResult]
_purgers: dict[str, RawEventPurger] = {}


def register_raw_event_purger(name: str, purger: RawEventPurger) -> None:
    """``purger(cutoff, batch, max_batches)`` deletes the app's done raw events older
    than ``cutoff`` and says how many it deleted and how many dead letters it kept."""
    _purgers[name] = purger


def delete_in_batches(
    queryset: Any,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    before_delete: Callable[[list[Any]], None] | None = None,
) -> int:
    """Delete the rows of ``queryset`` by primary key, ``batch`` at a time (short
    transactions, short locks), at most ``max_batches`` batches; returns how many rows of
    ``queryset``'s model went (rows deleted with them by cascade are not counted).
    ``before_delete(ids)`` runs in each batch's transaction before its delete: what the
    rows name outside the database (files) is read there and removed on commit.

    Each batch's rows are locked and deleted through ``queryset`` itself, so its
    conditions are checked again: a row changed since it was selected (an event re-driven
    meanwhile is no longer done with) is neither deleted nor handed to ``before_delete``.
    (``model.objects.filter(pk__in=ids)`` deleted it whatever it had become.)"""
    model = queryset.model
    deleted = 0
    for _ in range(max_batches):
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            break
        with transaction.atomic():
            locked = list(
                queryset.filter(pk__in=ids)
                .select_for_update(of=("self",))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if locked:
                if before_delete is not None:
                    before_delete(locked)
                _, per_model = queryset.filter(pk__in=locked).delete()
                deleted += per_model.get(model._meta.label, 0)
        if len(ids) < batch:
            break
    return deleted


def raw_events_purge(
    *,
    now: datetime | None = None,
    days: int | None = None,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> dict[str, int]:
    """Run every registered purger; ``{name: deleted}``. ``RAW_EVENT_RETENTION_DAYS`` of 0
    (or less) keeps raw events forever (nothing is purged)."""
    days = settings.RAW_EVENT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return {}
    cutoff = (now or timezone.now()) - timedelta(days=days)
    counts: dict[str, int] = {}
    for name, purger in sorted(_purgers.items()):
        result = purger(cutoff, batch, max_batches)
        counts[name] = result.deleted
        if result.dead_letters_kept:
            logger.warning(
                "%s: %s dead letter(s) older than %s days are kept until re-driven or discarded",
                name,
                result.dead_letters_kept,
                days,
            )
    if any(counts.values()):
        logger.info("Raw events purged (older than %s days): %s", days, counts)
    return counts
