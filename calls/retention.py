"""Retention of raw call events (``CallEvent``: Connect records, recording and Transcribe
notifications), run by the shared hourly purge (``support.retention``; registered in
``apps.py``).

Deleted: events processed, ignored or closed unapplied more than
``RAW_EVENT_RETENTION_DAYS`` ago (by ``processed_at``, else ``created_at``). Kept: received
events (not applied yet) and failed ones, which are this app's dead letters (kept for
inspection and applied again when the record is delivered again); failed ones older than
the cutoff are reported.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from calls.models import CallEvent, EventStatus
from support.retention import PurgeResult, delete_in_batches

DONE = (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.CLOSED)


def call_events_purge(cutoff: datetime, batch: int, max_batches: int) -> PurgeResult:
    old = Q(processed_at__lt=cutoff) | Q(processed_at__isnull=True, created_at__lt=cutoff)
    deleted = delete_in_batches(
        CallEvent.objects.filter(old, status__in=DONE), batch=batch, max_batches=max_batches
    )
    dead = CallEvent.objects.filter(status=EventStatus.FAILED, created_at__lt=cutoff).count()
    return PurgeResult(deleted=deleted, dead_letters_kept=dead)
