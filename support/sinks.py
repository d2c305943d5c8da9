"""Where the outbox relay sends events: pluggable *sinks* behind one small interface.

The relay (``support.services.outbox_relay``) hands every batch of pending events, in id
order, to each registered sink inside its transaction (the batch's outbox rows locked), and
marks an event delivered only when no sink reported a failure for it; a failed event stays
pending and comes again with the next relay (every sink must therefore accept an event
twice). Sinks:

- ``websocket`` (here): the Channels group ``events`` (the live workbench), one message
  per batch, registered by ``SupportConfig.ready()``;
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

from support.events import ALL_EVENTS_GROUP
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


#: The channel-layer message type of a relay batch (``WorkbenchConsumer.event_batch``).
EVENT_BATCH = "event.batch"


def event_batch_message(events: Sequence[OutboxEvent]) -> dict[str, Any]:
    """The one channel-layer message for a batch: its envelopes in id order."""
    return {"type": EVENT_BATCH, "events": [event.envelope() for event in events]}


class WebsocketSink:
    """The Channels layer (the live workbench): the whole batch as ONE message to the
    ``events`` group, which every workbench socket joins.

    Each socket gets every message of the group, so the layer carries (and each web
    process unpacks, and each socket handles) one message per batch instead of one per
    event: with N sockets connected that was N messages per event, each with its own
    visibility decision. The socket still sends the browser one frame per event, in id
    order (``tickets.consumers``). If the send fails, the whole batch stays pending and
    comes again (the page drops repeats by event id). No per-ticket group is sent to:
    no socket ever joined one."""

    name = "websocket"

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        layer: Any = get_channel_layer()
        if layer is None or not events:
            return {}
        # an exception fails every event of the batch (sinks_publish): kept pending, retried
        async_to_sync(layer.group_send)(ALL_EVENTS_GROUP, event_batch_message(events))
        return {}


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
