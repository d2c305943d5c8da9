"""The project's Celery app with one poison delivery, for ``test_poison_delivery``: a
worker started with ``-A tests.faults.poison_app`` is killed (its whole process group,
SIGKILL, as the kernel's OOM killer stops a container) whenever it parses a WhatsApp
delivery whose body holds ``POISON_MARK``. Nothing of the drain's own code runs after it."""

from __future__ import annotations

import os
import signal
from typing import Any

from celery.signals import worker_process_init

from support.celery import app

POISON_MARK = b"POISON-PILL"

__all__ = ["POISON_MARK", "app"]


@worker_process_init.connect
def _poison_parse(**_: Any) -> None:
    """In each pool process (Django is set up by then): the WhatsApp adapter's ``parse``
    kills the worker on the marked delivery."""
    from channels_app.adapters.base import get_adapter

    adapter = type(get_adapter("whatsapp"))
    real = adapter.parse

    def parse(self: Any, account: Any, request: Any) -> Any:
        if POISON_MARK in request.body:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return real(self, account, request)

    adapter.parse = parse  # type: ignore[method-assign]
