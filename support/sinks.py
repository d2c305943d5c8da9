"""Where the outbox relay sends events: pluggable *sinks* behind one small interface.

The relay (``support.services.outbox_relay``) hands every batch of pending events, in id
order, to each registered sink inside its transaction (the batch's outbox rows locked), and
marks an event delivered only when no sink reported a failure for it; a failed event stays
pending and comes again with the next relay (every sink must therefore accept an event
twice). Sinks:

- ``websocket`` (here): the Channels groups ``events`` and ``ticket-<id>`` (the live
  workbench), registered by ``SupportConfig.ready()``;
- Amazon EventBridge, outgoing webhooks and Kafka (``events_out``): they never call out from
  the relay; they write one ``support.delivery`` delivery per event and target (unique per
  idempotency key, so a repeated batch adds nothing), and the delivery engine sends it with
  no transaction open, with retries, circuit breaking, dead letters and re-drive.

A sink reads its settings when it runs (an integration that is switched off does nothing),
never at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from support.events import ALL_EVENTS_GROUP, ticket_group
from support.models import OutboxEvent


class EventSink(Protocol):
    """One destination of the relay. ``publish`` gets a batch in id order and answers the
    failures by event id (an exception for the whole batch fails every event of it)."""

    name: str

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]: ...


_sinks: dict[str, EventSink] = {}


def sink_register(sink: EventSink) -> None:
    """Register (or replace, by name) a sink; call from ``AppConfig.ready()``. Sinks run in
    registration order."""
    _sinks[sink.name] = sink


def sink_unregister(name: str) -> None:
    _sinks.pop(name, None)


def sinks() -> list[EventSink]:
    return list(_sinks.values())


def groups_for(event: OutboxEvent) -> list[str]:
    groups = [ALL_EVENTS_GROUP]
    ticket_id = event.payload.get("ticket_id")
    if ticket_id is not None:
        groups.append(ticket_group(ticket_id))
    return groups


class WebsocketSink:
    """The Channels layer (the live workbench): every group send of a batch in one
    event-loop run (``async_to_sync`` per send costs a thread hop, several ms each)."""

    name = "websocket"

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        layer: Any = get_channel_layer()
        if layer is None:
            return {}

        async def send_all() -> dict[int, Exception]:
            errors: dict[int, Exception] = {}
            for event in events:
                message = {"type": "event.message", "event": event.envelope()}
                try:
                    for group in groups_for(event):
                        await layer.group_send(group, message)
                except Exception as exc:  # noqa: BLE001 - kept pending, retried
                    errors[event.pk] = exc
            return errors

        return async_to_sync(send_all)()


def sinks_publish(events: Sequence[OutboxEvent]) -> dict[int, Exception]:
    """Every sink's failures for ``events`` (the first failure per event wins)."""
    errors: dict[int, Exception] = {}
    for sink in sinks():
        try:
            failed = sink.publish(events)
        except Exception as exc:  # noqa: BLE001 - the whole batch stays pending, retried
            failed = {event.pk: exc for event in events}
        for pk, error in failed.items():
            errors.setdefault(pk, error)
    return errors
