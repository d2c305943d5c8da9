from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import responses
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from support import events, services
from support.models import OutboxEvent
from tickets import services as ticket_services

URL = "https://hooks.example.test/events"


@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_leaves_no_event(customer):
    with pytest.raises(RuntimeError), transaction.atomic():
        ticket_services.ticket_create(customer=customer, subject="s", body="b")
        assert OutboxEvent.objects.count() == 2
        raise RuntimeError("boom")
    assert OutboxEvent.objects.count() == 0


async def _drain(layer, channel: str) -> list[dict]:
    """Everything the channel receives until it is quiet for a second (one event loop)."""
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), 1.0))
        except TimeoutError:
            return received


@pytest.mark.django_db(transaction=True)
def test_committed_event_is_delivered_to_channels_groups_after_commit(customer):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.ALL_EVENTS_GROUP, channel)
    try:
        ticket = ticket_services.ticket_create(customer=customer, subject="Hello", body="b")
        received = async_to_sync(_drain)(layer, channel)
    finally:
        async_to_sync(layer.group_discard)(events.ALL_EVENTS_GROUP, channel)
    # one message for the relay's batch, its events in id order
    assert [m["type"] for m in received] == ["event.batch"]
    batch = received[0]["events"]
    assert [e["event_type"] for e in batch] == ["ticket.created", "message.created"]
    assert [e["id"] for e in batch] == list(
        OutboxEvent.objects.order_by("id").values_list("id", flat=True)
    )
    assert batch[0]["ticket_id"] == ticket.pk
    assert batch[0]["status"] == "new"
    assert OutboxEvent.objects.filter(delivered_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_failing_subscriber_keeps_event_pending_then_it_is_retried(customer):
    calls: list[int] = []

    def flaky(event: OutboxEvent) -> None:
        calls.append(event.pk)
        if len(calls) == 1:
            raise ValueError("downstream unavailable")

    events.subscribe("test.flaky", flaky)
    try:
        event = events.event_record("test.flaky", aggregate_type="t", aggregate_id=1, payload={})
        assert services.outbox_relay() == 0
        event.refresh_from_db()
        assert event.delivered_at is None
        assert event.attempts == 1
        assert "downstream unavailable" in event.last_error
        assert services.outbox_relay() == 1
        event.refresh_from_db()
        assert event.delivered_at is not None
        assert calls == [event.pk, event.pk]
    finally:
        events._subscribers["test.flaky"].remove(flaky)


@pytest.mark.django_db
def test_event_gives_up_after_max_attempts_and_can_be_redriven():
    def broken(event: OutboxEvent) -> None:
        raise ValueError("always")

    events.subscribe("test.broken", broken)
    try:
        event = events.event_record("test.broken", aggregate_type="t", aggregate_id=1, payload={})
        for _ in range(services.OUTBOX_MAX_ATTEMPTS):
            services.outbox_relay()
        event.refresh_from_db()
        assert event.failed_at is not None
        assert services.outbox_relay() == 0  # no longer picked up
        assert services.outbox_redrive(event_ids=[event.pk], actor=None) == 1
        event.refresh_from_db()
        assert (event.failed_at, event.attempts) == (None, 0)
    finally:
        events._subscribers["test.broken"].remove(broken)


@pytest.mark.django_db
def test_batch_subscriber_gets_a_batch_once_and_a_failure_keeps_it_pending():
    batches: list[list[int]] = []
    broken = [True]

    def handler(batch: list[OutboxEvent]) -> None:
        batches.append([e.pk for e in batch])
        if broken[0]:
            raise ValueError("queue unavailable")

    events.subscribe_batch("test.batch", handler)
    try:
        ids = [
            events.event_record("test.batch", aggregate_type="t", aggregate_id=i, payload={}).pk
            for i in range(3)
        ]
        other = events.event_record("test.other", aggregate_type="t", aggregate_id=9, payload={})
        services.outbox_relay()
        assert batches[0] == ids  # the three together, in order, without the other type
        pending = OutboxEvent.objects.filter(pk__in=ids, delivered_at__isnull=True)
        assert pending.count() == 3
        assert all("queue unavailable" in e.last_error for e in pending)
        assert OutboxEvent.objects.get(pk=other.pk).delivered_at is not None
        broken[0] = False
        assert services.outbox_relay() == 3
        assert batches[-1] == ids
        assert not OutboxEvent.objects.filter(delivered_at__isnull=True).exists()
    finally:
        events._batch_subscribers["test.batch"].remove(handler)


# --- subscriber_task_enqueue: no outside call inside the relay's transaction (#14 item 3) ----


class _Task:
    """A Celery task's surface that subscriber_task_enqueue uses: ``app.conf`` and ``delay``."""

    def __init__(self, *, eager: bool, run: Any) -> None:
        self.app = SimpleNamespace(conf=SimpleNamespace(task_always_eager=eager))
        self.delay = run


@pytest.mark.django_db
def test_eager_task_from_a_subscriber_calls_out_after_the_relay_commits(
    django_capture_on_commit_callbacks: Any,
):
    """Run eagerly (tests, single-process demos), a task a subscriber starts would call out
    with the relay's outbox rows locked; it runs once the relay's batch commits."""
    sent: list[int] = []

    def send(event_id: int) -> None:
        sent.append(requests.post(URL, json={"event": event_id}, timeout=5).status_code)

    task = _Task(eager=True, run=send)

    def subscriber(event: OutboxEvent) -> None:
        events.subscriber_task_enqueue(task, event.pk)

    events.subscribe("test.calls_out", subscriber)
    try:
        with responses.RequestsMock() as mocked:
            mocked.add(responses.POST, URL, status=202)
            event = events.event_record(
                "test.calls_out", aggregate_type="t", aggregate_id=1, payload={}
            )
            with django_capture_on_commit_callbacks(execute=True):
                assert services.outbox_relay() == 1
                assert sent == []  # not inside the relay
            assert sent == [202]
            assert json.loads(mocked.calls[0].request.body or b"") == {"event": event.pk}
    finally:
        events._subscribers["test.calls_out"].remove(subscriber)


@pytest.mark.django_db
def test_broker_publish_from_a_subscriber_happens_in_the_relay_and_a_failure_keeps_it_pending():
    """With a broker the message is published inside the relay's transaction: a failed
    publish leaves the event pending for the next relay (after commit it would be lost)."""
    published: list[int] = []
    broker_down = [True]

    def publish(event_id: int) -> None:
        if broker_down[0]:
            raise ConnectionError("broker unavailable")
        published.append(event_id)

    task = _Task(eager=False, run=publish)

    def subscriber(event: OutboxEvent) -> None:
        events.subscriber_task_enqueue(task, event.pk)

    events.subscribe("test.publishes", subscriber)
    try:
        event = events.event_record(
            "test.publishes", aggregate_type="t", aggregate_id=1, payload={}
        )
        assert services.outbox_relay() == 0
        event.refresh_from_db()
        assert event.delivered_at is None
        assert "broker unavailable" in event.last_error
        broker_down[0] = False
        assert services.outbox_relay() == 1
        assert published == [event.pk]
    finally:
        events._subscribers["test.publishes"].remove(subscriber)
