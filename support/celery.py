"""The Celery application; tasks are discovered in every installed app's ``tasks.py``."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

logger = logging.getLogger(__name__)

app = Celery("support")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: Sent each time a worker connects to the broker: when it starts, and when the broker
#: comes back after an outage. Work recorded while the broker was unreachable (webhook
#: deliveries whose drain could not be woken, deliveries and events whose task was never
#: queued, tasks a killed worker held unacknowledged) is then picked up at once, instead
#: of waiting for the beat sweeps and their grace periods. Each is idempotent.
ON_CONNECT_TASKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("channels_app.tasks.inbound_event_sweep_task", {"stale_seconds": 0}),
    ("channels_app.tasks.outbound_replies_sweep_task", {"stale_seconds": 0}),
    ("calls.tasks.call_events_sweep_task", {"stale_seconds": 0}),
    ("channels_app.tasks.attachment_downloads_sweep_task", {"stale_seconds": 0}),
    ("support.delivery.tasks.delivery_sweep_task", {"grace_seconds": 0}),
    ("support.tasks.outbox_relay_task", {}),
    ("knowledge.tasks.kb_object_events_sweep_task", {"grace_seconds": 0}),
)


class SweepOnConnect(bootsteps.StartStopStep):
    """A worker consumer step: its ``start`` runs after every (re)connection to the broker
    (Celery restarts the consumer's steps when the connection comes back)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        for name, kwargs in ON_CONNECT_TASKS:
            try:
                parent.app.send_task(name, kwargs=kwargs, retry=False)
            except Exception:  # noqa: BLE001 - the beat sweeps remain the backstop
                logger.warning("Could not send %s after connecting to the broker", name)
        logger.info("Connected to the broker: sweeps sent")


app.steps["consumer"].add(SweepOnConnect)


def _survive_connection_loss_with_unacked_messages() -> None:
    """Keep the worker alive when the Redis broker goes away while it holds unacknowledged
    (``acks_late``) messages.

    Celery 5.7 / kombu 5.7: after a connection loss the consumer collects and closes the
    connection, and the Redis channel forgets its transport. Closing the channel then tries
    to put the unacknowledged messages back, and a task finishing after the reconnection
    acknowledges its message, both through that forgotten transport: ``AttributeError``,
    which is not a connection error, so the worker exits ("Unrecoverable error") instead of
    reconnecting. Here a channel without a connection raises the connection error it is,
    which kombu and Celery already handle (log, go on): the messages stay in the broker's
    unacked set (restored after the visibility timeout) and the sweeps sent on reconnection
    (``ON_CONNECT_TASKS``) pick their work up at once. Found by tests/faults.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    channel_class: Any = kombu_redis.Channel
    original = channel_class._connparams
    if getattr(original, "_support_guarded", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or getattr(self.connection, "client", None) is None:
            raise redis.exceptions.ConnectionError("The broker connection was closed.")
        return original(self, asynchronous)

    _connparams._support_guarded = True  # type: ignore[attr-defined]
    channel_class._connparams = _connparams


_survive_connection_loss_with_unacked_messages()


def _connect_log_context() -> None:
    """Carry the log context (request id, user, ticket, correlation id) from the code that
    enqueues a task into the worker that runs it (``support.logging_context``)."""
    from celery import signals

    from support import logging_context

    signals.before_task_publish.connect(logging_context.celery_before_publish, weak=False)
    signals.task_prerun.connect(logging_context.celery_task_prerun, weak=False)
    signals.task_postrun.connect(logging_context.celery_task_postrun, weak=False)


_connect_log_context()


def _connect_beat_heartbeat() -> None:
    """Beat marks each scheduled task it sends (Celery's ``celery_beat_task`` header); once
    published, the time is written to Redis (``support/beat.py``), what ``/metrics`` and
    ``/health`` read to tell that beat runs."""
    from celery import signals

    from support.beat import beat_task_published

    signals.after_task_publish.connect(beat_task_published, weak=False)


_connect_beat_heartbeat()
