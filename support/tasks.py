"""Celery tasks of the shared infrastructure (thin: each calls one service)."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache

from support import services

HEARTBEAT_KEY = "celery:worker-heartbeat"


@shared_task(acks_late=True, max_retries=0, soft_time_limit=60, time_limit=90)
def outbox_relay_task() -> int:
    """Idempotent: delivered events are skipped; locked ones belong to another relay."""
    return services.outbox_relay()


@shared_task(soft_time_limit=300, time_limit=360)
def outbox_purge_task() -> int:
    return services.outbox_purge()


@shared_task(soft_time_limit=5, time_limit=10)
def heartbeat_task() -> None:
    cache.set(HEARTBEAT_KEY, time.time(), timeout=120)
