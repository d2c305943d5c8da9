"""Retention of received S3 object events (``ObjectEvent``), run by the shared hourly
purge of raw events (``support.retention``; registered in ``apps.py``): each holds the
notification as it arrived (the requester's account and IP address).

Deleted: events processed or closed unapplied (superseded by a later event of their object
or by a sync) more than ``RAW_EVENT_RETENTION_DAYS`` ago (by ``processed_at``). Kept:
events not processed yet, and failed ones (the sweep gave up): dead letters that wait for
a supervisor's re-drive (or the same event delivered again); those received before the
cutoff are reported. A processed event is also kept while an earlier event of its object
(``services.object_events_order_q``) is kept unprocessed: it is what closes that one as
superseded when it is re-driven or re-armed. Before 2026-12-06 it was deleted, and a dead
delete re-driven after the later upload was purged removed the live document.

The order of an object's events (``services._object_events_later``) is known while they
are kept: an event delivered more than the retention after a later one of its object
would be applied. The default (30 days) is past what SQS keeps a message (14 days at
most) and EventBridge retries a delivery (24 hours), and a sync of the source settles
an event older than its listing in any case (``KnowledgeSource.listed_at``).
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef

from knowledge.models import ObjectEvent
from knowledge.services import object_events_order_q
from support.retention import PurgeResult, delete_in_batches


def object_events_purge(cutoff: datetime, batch: int, max_batches: int) -> PurgeResult:
    # An earlier event of the same object still unprocessed (a dead letter, or pending)
    # is told it was overtaken by the processed later ones: they are kept while it is.
    overtaken = ObjectEvent.objects.filter(
        bucket=OuterRef("bucket"), key=OuterRef("key"), processed_at__isnull=True
    ).filter(object_events_order_q(OuterRef("sequencer"), OuterRef("pk"), before=True))
    deleted = delete_in_batches(
        ObjectEvent.objects.filter(processed_at__lt=cutoff).exclude(Exists(overtaken)),
        batch=batch,
        max_batches=max_batches,
    )
    dead = ObjectEvent.objects.filter(
        processed_at__isnull=True, failed_at__isnull=False, received_at__lt=cutoff
    ).count()
    return PurgeResult(deleted=deleted, dead_letters_kept=dead)
