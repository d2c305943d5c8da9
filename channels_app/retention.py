"""Retention of raw webhook deliveries (``InboundEvent``), run by the shared hourly purge
(``support.retention``; registered in ``apps.py``).

Deleted: deliveries processed, ignored (unknown event types) or refused as malformed more
than ``RAW_EVENT_RETENTION_DAYS`` ago (by ``processed_at``, else ``received_at``). Kept:
received and retrying deliveries (not processed yet) and dead letters, which wait for a
re-drive from the admin; those older than the cutoff are reported.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from channels_app.models import InboundEvent, InboundStatus
from support.retention import PurgeResult, delete_in_batches

DONE = (InboundStatus.PROCESSED, InboundStatus.IGNORED, InboundStatus.MALFORMED)


def inbound_events_purge(cutoff: datetime, batch: int, max_batches: int) -> PurgeResult:
    old = Q(processed_at__lt=cutoff) | Q(processed_at__isnull=True, received_at__lt=cutoff)
    deleted = delete_in_batches(
        InboundEvent.objects.filter(old, status__in=DONE), batch=batch, max_batches=max_batches
    )
    dead = InboundEvent.objects.filter(status=InboundStatus.DEAD, received_at__lt=cutoff).count()
    return PurgeResult(deleted=deleted, dead_letters_kept=dead)
