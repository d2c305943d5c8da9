"""Retention of raw webhook deliveries (``InboundEvent``), run by the shared hourly purge
(``support.retention``; registered in ``apps.py``).

Deleted: deliveries processed, ignored (unknown event types), refused as malformed or
closed unprocessed by a supervisor (``inbound_event_close``) more than
``RAW_EVENT_RETENTION_DAYS`` ago (by ``processed_at``, else ``received_at``). Kept:
received and retrying deliveries (not processed yet) and dead letters, which wait for a
re-drive from the admin; those older than the cutoff are reported. A deleted web chat
delivery's file still staged (one never drained) is deleted from storage after each
batch commits (``channels_app.services.staged_uploads``).
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from channels_app.models import InboundEvent, InboundStatus
from channels_app.services.staged_uploads import (
    inbound_events_staged_names,
    staged_uploads_delete_on_commit,
)
from support.retention import PurgeResult, delete_in_batches

DONE = (
    InboundStatus.PROCESSED,
    InboundStatus.IGNORED,
    InboundStatus.MALFORMED,
    InboundStatus.CLOSED,  # a supervisor let it go: as long as an ignored one, no longer
)


def _staged_files_after_commit(ids: list[int]) -> None:
    names = inbound_events_staged_names(InboundEvent.objects.filter(pk__in=ids))
    staged_uploads_delete_on_commit(names)


def inbound_events_purge(cutoff: datetime, batch: int, max_batches: int) -> PurgeResult:
    old = Q(processed_at__lt=cutoff) | Q(processed_at__isnull=True, received_at__lt=cutoff)
    deleted = delete_in_batches(
        InboundEvent.objects.filter(old, status__in=DONE),
        batch=batch,
        max_batches=max_batches,
        before_delete=_staged_files_after_commit,
    )
    dead = InboundEvent.objects.filter(status=InboundStatus.DEAD, received_at__lt=cutoff).count()
    return PurgeResult(deleted=deleted, dead_letters_kept=dead)
