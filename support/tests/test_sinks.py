"""The outbox relay fans out to every registered sink; an event a sink could not take stays
pending and comes again with the next relay (to every sink: each must accept a repeat)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from support import services
from support.events import event_record
from support.models import OutboxEvent
from support.sinks import sink_register, sink_unregister, sinks


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.fail: set[int] = set()
        self.broken = False

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        if self.broken:
            raise ConnectionError("sink down")
        self.seen.extend(e.pk for e in events)
        return {pk: RuntimeError(f"refused {pk}") for pk in self.fail}


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    recording = RecordingSink()
    sink_register(recording)
    yield recording
    sink_unregister(recording.name)


def test_the_websocket_layer_and_the_external_sinks_are_registered():
    assert [s.name for s in sinks()][:4] == ["websocket", "eventbridge", "webhooks", "kafka"]


@pytest.mark.django_db
def test_each_sink_gets_the_batch_in_order_and_failures_stay_pending(sink):
    first = event_record("ticket.updated", aggregate_type="ticket", aggregate_id=1, payload={})
    second = event_record("ticket.updated", aggregate_type="ticket", aggregate_id=2, payload={})
    sink.fail = {second.pk}

    assert services.outbox_relay() == 1

    # The relay takes another batch while the last one delivered something: the failed
    # event comes once more in this run, then the run stops.
    assert sink.seen == [first.pk, second.pk, second.pk]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.delivered_at is not None
    assert second.delivered_at is None
    assert second.attempts == 2
    assert second.last_error == f"RuntimeError: refused {second.pk}"

    sink.fail = set()
    assert services.outbox_relay() == 1
    assert sink.seen == [first.pk, second.pk, second.pk, second.pk]
    second.refresh_from_db()
    assert second.delivered_at is not None


@pytest.mark.django_db
def test_a_sink_that_raises_keeps_the_whole_batch_pending(sink):
    event = event_record("ticket.updated", aggregate_type="ticket", aggregate_id=1, payload={})
    sink.broken = True

    assert services.outbox_relay() == 0

    event.refresh_from_db()
    assert event.delivered_at is None
    assert event.last_error == "ConnectionError: sink down"


class FlakyLayer:
    """A channel layer whose group sends fail while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))
        if self.down:
            raise ConnectionError("channel layer down")


@pytest.mark.django_db
def test_the_websocket_sink_sends_a_batch_as_one_message_and_a_failed_send_keeps_it_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = FlakyLayer()
    monkeypatch.setattr("support.sinks.get_channel_layer", lambda: layer)
    events = [
        event_record("ticket.updated", aggregate_type="ticket", aggregate_id=n, payload=p)
        for n, p in enumerate([{"ticket_id": 1}, {"ticket_id": 2}, {}])
    ]
    ids = [e.pk for e in events]

    assert services.outbox_relay() == 0

    def sent() -> list[tuple[str, str, list[int]]]:
        return [(g, m["type"], [e["id"] for e in m["events"]]) for g, m in layer.sent]

    assert sent() == [("events", "event.batch", ids)]  # one send, not one per event/group
    pending = OutboxEvent.objects.filter(pk__in=ids, delivered_at__isnull=True)
    assert sorted(e.last_error for e in pending) == ["ConnectionError: channel layer down"] * 3

    layer.down = False
    assert services.outbox_relay() == 3
    assert sent() == [("events", "event.batch", ids)] * 2
    assert layer.sent[1][1]["events"] == [e.envelope() for e in OutboxEvent.objects.order_by("id")]
    assert not OutboxEvent.objects.filter(delivered_at__isnull=True).exists()
