"""Batch processing of recorded deliveries (the drain) and the hot path's account cache."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.test import Client

from channels_app import selectors, services
from channels_app.adapters.base import get_adapter
from channels_app.models import InboundEvent
from channels_app.services import matching
from channels_app.tests.conftest import (
    counts,
    diff,
    make_account,
    post_signed,
    wa_body,
)
from tickets.models import Message

pytestmark = pytest.mark.django_db


post = post_signed


def test_deliveries_are_recorded_then_drained_in_one_batch_in_arrival_order(
    client: Client,
) -> None:
    account = make_account("whatsapp")
    before = counts()
    bodies = [wa_body("34600000001", f"wamid.d{i}", f"message {i}") for i in range(3)]
    with mock.patch("channels_app.services.intake.inbound_drain_wake") as wake:
        responses = [post(client, account, body) for body in bodies]
        duplicate = post(client, account, bodies[1])
    assert [r.json()["status"] for r in responses] == ["accepted"] * 3
    assert duplicate.json() == {"status": "duplicate", "id": responses[1].json()["id"]}
    # outside a transaction (the test's own is not committed) nothing is woken yet
    assert wake.call_count == 0
    assert diff(before, counts()) == {"events": 3}

    result = services.inbound_events_drain(account_id=account.pk)
    assert (result.taken, result.retries) == (3, [])
    assert diff(before, counts()) == {
        "events": 3,
        "customers": 1,
        "identities": 1,
        "tickets": 1,
        "messages": 3,
    }
    texts = list(Message.objects.order_by("id").values_list("body_text", flat=True))
    assert texts == ["message 0", "message 1", "message 2"]
    assert set(InboundEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert services.inbound_events_drain(account_id=account.pk).taken == 0


def test_a_failing_delivery_is_rolled_back_alone_and_returned_for_retry(
    client: Client, settings: Any
) -> None:
    settings.CHANNELS_INBOUND_MAX_ATTEMPTS = 5
    account = make_account("whatsapp")
    bodies = [
        wa_body("34600000001", "wamid.ok1", "first"),
        wa_body("34600000002", "wamid.bad", "boom"),
        wa_body("34600000003", "wamid.ok2", "second"),
    ]
    ids = [post(client, account, body).json()["id"] for body in bodies]
    real = matching._customer_lookup

    def flaky(channel: str, message: Any) -> Any:
        if message.sender_id == "34600000002":
            raise RuntimeError("db hiccup")
        return real(channel, message)

    # the bulk path fails as a whole (its id reservation); one by one, only the 2nd does
    with (
        mock.patch("channels_app.services.bulk.ids_reserve", side_effect=RuntimeError("bulk")),
        mock.patch("channels_app.services.matching._customer_lookup", side_effect=flaky),
    ):
        result = services.inbound_events_drain(account_id=account.pk)
    assert result.taken == 3
    assert [event_id for event_id, *_ in result.retries] == [ids[1]]
    statuses = dict(InboundEvent.objects.values_list("pk", "status"))
    assert statuses == {ids[0]: "processed", ids[1]: "retrying", ids[2]: "processed"}
    failed = InboundEvent.objects.get(pk=ids[1])
    assert (failed.attempts, failed.error) == (1, "RuntimeError: db hiccup")
    assert set(Message.objects.values_list("channel_message_id", flat=True)) == {
        "wamid.ok1",
        "wamid.ok2",
    }
    # the retry (the per-event task) then lands it once
    services.inbound_event_process(event_id=ids[1])
    assert Message.objects.filter(channel_message_id="wamid.bad").count() == 1
    assert InboundEvent.objects.get(pk=ids[1]).status == "processed"


def test_a_message_already_recorded_is_a_duplicate_in_a_drain(client: Client) -> None:
    account = make_account("whatsapp")
    post(client, account, wa_body("34600000001", "wamid.same", "hello"))
    services.inbound_events_drain(account_id=account.pk)
    before = counts()
    # the same message id in a different delivery (e.g. a re-sent batch)
    post(client, account, wa_body("34600000001", "wamid.same", "hello again"))
    result = services.inbound_events_drain(account_id=account.pk)
    assert result.taken == 1
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.status, event.summary["duplicates"]) == ("processed", 1)


def test_account_lookup_is_cached_and_cleared_when_an_account_is_saved(client: Client) -> None:
    account = make_account("whatsapp")
    selectors.channel_account_cache_clear()
    cached = selectors.channel_account_get_cached(
        channel="whatsapp", webhook_token=account.webhook_token
    )
    assert cached.pk == account.pk
    with mock.patch.object(selectors, "channel_account_get") as lookup:
        again = selectors.channel_account_get_cached(
            channel="whatsapp", webhook_token=account.webhook_token
        )
    assert again is cached
    assert lookup.call_count == 0
    account.is_active = False
    account.save()
    response = post(client, account, wa_body("34600000001", "wamid.x", "hi"))
    assert response.status_code == 404
    assert InboundEvent.objects.count() == 0


def test_a_drain_task_lingers_for_a_stream_then_ends(settings: Any) -> None:
    """With a real broker the task waits briefly for more before it ends, so a steady
    stream keeps one drain running instead of queueing a new task for every lull."""
    from channels_app import tasks
    from support.celery import app

    results = [services.DrainResult(taken=n, retries=[]) for n in (0, 0, 3, 0)]
    results += [services.DrainResult(taken=0, retries=[])] * 200
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    with (
        mock.patch.object(tasks, "DRAIN_LINGER_SECONDS", 0.2),
        mock.patch.object(tasks, "DRAIN_POLL_SECONDS", 0.01),
        mock.patch.object(tasks.services, "inbound_events_drain", side_effect=results) as drain,
        mock.patch.object(tasks.services, "inbound_drain_flag_clear"),
    ):
        try:
            total = tasks.inbound_events_drain_task.run(1)
        finally:
            app.conf.task_always_eager = eager
    assert total == 3  # the deliveries that arrived during the lull were taken
    assert 5 <= drain.call_count < 60  # then it polled for ~0.2 s and ended


def _other_drainer(account_id: int) -> Any:
    """Another worker's drainer lease on the account (a Lease taken here)."""
    from support.redis_client import Lease

    lease = Lease(services.DRAINER_LEASE.format(account_id=account_id), 15)
    assert lease.take()
    return lease


def _drain_task_run(account_id: int) -> int:
    """The drain task as a worker runs it (not eager: it lingers, polls and hands over)."""
    from channels_app import tasks
    from support.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        with (
            mock.patch.object(tasks, "DRAIN_LINGER_SECONDS", 0.05),
            mock.patch.object(tasks, "DRAIN_POLL_SECONDS", 0.01),
        ):
            return int(tasks.inbound_events_drain_task.run(account_id))
    finally:
        app.conf.task_always_eager = eager


def test_a_second_drain_of_an_account_gives_its_worker_back_at_once(client: Client) -> None:
    """While one task drains an account, a second one woken for it returns at once instead
    of waiting on the batch lock: a burst used to hold every realtime worker process in
    drains of one account, and the outbox relay and outbound replies waited behind them."""
    account = make_account("whatsapp")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        assert post(client, account, wa_body("34600000001", "wamid.d1", "hi")).status_code == 200
    from channels_app.services import drain
    from support.redis_client import get_redis

    other = _other_drainer(account.pk)  # another worker is the drainer
    flag = services.DRAIN_FLAG.format(account_id=account.pk)
    get_redis().set(flag, 1, ex=5)  # what woke this task
    try:
        with (
            mock.patch.object(services, "inbound_events_drain") as batches,
            mock.patch.object(drain, "_drain_enqueue") as later,
        ):
            assert _drain_task_run(account.pk) == 0
            assert _drain_task_run(account.pk) == 0  # woken again: still one check scheduled
        assert batches.call_count == 0
        assert InboundEvent.objects.get().status == "received"  # the drainer takes it
        # The wake flag stays set: more deliveries do not wake a task each meanwhile.
        assert get_redis().get(flag) is not None
        # One check for when the holder's lease would run out (it may have died).
        ((args, kwargs),) = later.call_args_list
        assert args == (account.pk,)
        assert 1 < kwargs["countdown"] <= 16
        # ... whose flag lapses as it comes due, so a check that finds the holder alive
        # (the lease renewed) can schedule the next one.
        recheck = services.DRAINER_RECHECK_FLAG.format(account_id=account.pk)
        assert 0 < get_redis().ttl(recheck) <= kwargs["countdown"]
    finally:
        other.release()
        get_redis().delete(services.DRAINER_RECHECK_FLAG.format(account_id=account.pk))
    assert _drain_task_run(account.pk) == 1  # the lease free: this task drains
    assert get_redis().get(flag) is None  # the drainer cleared it
    assert Message.objects.filter(channel_message_id="wamid.d1").exists()


def test_the_drainer_wakes_a_successor_for_deliveries_left_after_it_let_go(
    client: Client,
) -> None:
    """A delivery recorded while the drainer finishes (its wake met the lease still held, so
    that task gave up) is not left for the minute sweep: leaving, the drainer releases the
    lease and then wakes a new drain for what is still received."""
    from channels_app.services import drain

    account = make_account("whatsapp")
    seen: list[bool] = []

    def batch(*, account_id: int, limit: int = services.DRAIN_BATCH) -> services.DrainResult:
        if not InboundEvent.objects.exists():  # arrives as the drainer is finishing
            with mock.patch("channels_app.services.intake.inbound_drain_wake"):
                post(client, account, wa_body("34600000001", "wamid.late", "one more"))
        return services.DrainResult(taken=0, retries=[])

    def wake(account_id: int) -> None:
        _other_drainer(account_id).release()  # free again by now, or this fails
        seen.append(True)

    with (
        mock.patch.object(services, "inbound_events_drain", side_effect=batch),
        mock.patch.object(drain, "_drain_enqueue", side_effect=wake) as woken,
    ):
        _drain_task_run(account.pk)
    assert woken.call_args_list == [mock.call(account.pk)]
    assert seen == [True]

    with mock.patch.object(drain, "_drain_enqueue") as woken:  # nothing left: no wake
        services.inbound_events_drain(account_id=account.pk)
        _drain_task_run(account.pk)
    assert woken.call_count == 0


def test_a_drainer_that_died_keeps_others_out_only_until_its_lease_expires(
    client: Client,
) -> None:
    """The lease is a Redis key with a lifetime, renewed between batches: a drainer killed
    mid-drain does not block the account's intake for good (a database session lock on a
    pooled connection could outlive its task)."""
    from support.redis_client import get_redis

    account = make_account("whatsapp")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        post(client, account, wa_body("34600000001", "wamid.dead1", "hello?"))
    from channels_app.services import drain

    dead = _other_drainer(account.pk)
    key = services.DRAINER_LEASE.format(account_id=account.pk)
    assert 0 < get_redis().ttl(key) <= 15
    with mock.patch.object(drain, "_drain_enqueue") as later:
        assert _drain_task_run(account.pk) == 0
    assert later.call_count == 1  # a check when the lease runs out: this one
    get_redis().delete(services.DRAINER_RECHECK_FLAG.format(account_id=account.pk))
    get_redis().delete(key)  # what its expiry does
    assert _drain_task_run(account.pk) == 1
    assert dead.renew() is True  # renewed within a third of its life: no call made
    dead.renewed = 0.0
    assert dead.renew() is False  # lost: the key is gone, nothing renewed
    assert get_redis().get(key) is None


def test_redis_down_the_drain_runs_as_before_the_lease(client: Client) -> None:
    """No Redis, no lease: the task drains anyway (the batch lock keeps arrival order)."""
    import redis

    account = make_account("whatsapp")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        post(client, account, wa_body("34600000001", "wamid.noredis", "hi"))
    with mock.patch("support.redis_client.Lease.take", side_effect=redis.ConnectionError):
        assert _drain_task_run(account.pk) == 1


def test_a_delivery_right_after_the_drainer_left_wakes_a_drain_at_once(client: Client) -> None:
    """A task that gave way while the drainer ran left the wake flag set (so a burst does
    not start a task per delivery); the drainer clears it as it leaves, so the next
    delivery's wake starts a drain at once instead of after the flag's five seconds."""
    from support.redis_client import get_redis

    account = make_account("whatsapp")
    flag = services.DRAIN_FLAG.format(account_id=account.pk)

    def batch(*, account_id: int, limit: int = services.DRAIN_BATCH) -> services.DrainResult:
        get_redis().set(flag, 1, ex=5)  # a delivery's wake while the drainer runs
        return services.DrainResult(taken=0, retries=[])

    with mock.patch.object(services, "inbound_events_drain", side_effect=batch):
        _drain_task_run(account.pk)
    assert get_redis().get(flag) is None


class WorkerStopped(BaseException):
    """What a drain meets when its worker is killed mid-batch (out of memory, the task's
    hard time limit): nothing of the batch's own code runs after it, and its transaction
    rolls back uncounted (a real kill: tests/faults/test_poison_delivery.py)."""


def test_a_delivery_that_stops_the_worker_every_time_is_set_aside_and_the_rest_go_on(
    client: Client,
) -> None:
    account = make_account("whatsapp")
    texts = ["first", "second", "POISON", "fourth", "fifth"]
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        ids = [
            post(client, account, wa_body(f"3460000000{n}", f"wamid.p{n}", text)).json()["id"]
            for n, text in enumerate(texts)
        ]
    adapter = type(get_adapter("whatsapp"))
    real = adapter.parse

    def parse(self: Any, account: Any, request: Any) -> Any:
        if b"POISON" in request.body:
            raise WorkerStopped
        return real(self, account, request)

    stops = 0
    with mock.patch.object(adapter, "parse", parse):
        for _ in range(20):
            try:
                if not services.inbound_events_drain(account_id=account.pk).taken:
                    break
            except WorkerStopped:
                stops += 1
    # the whole batch, then the poison taken alone twice (the two before it, alone, pass)
    assert stops == 3
    events = {event.pk: event for event in InboundEvent.objects.all()}
    assert [events[pk].status for pk in ids] == [
        "processed",
        "processed",
        "dead",
        "processed",
        "processed",
    ]
    poison = events[ids[2]]
    assert (poison.claims, poison.attempts) == (3, 1)
    assert "stopped before finishing, 3 times" in poison.error
    assert {events[pk].claims for pk in ids if pk != ids[2]} == {0}
    assert list(Message.objects.order_by("id").values_list("body_text", flat=True)) == [
        "first",
        "second",
        "fourth",
        "fifth",
    ]
    # a supervisor's re-process forgets the stops: tried again (and processed, the cause gone)
    assert services.inbound_event_reprocess(event=poison)
    assert InboundEvent.objects.get(pk=ids[2]).claims == 0
    services.inbound_event_process(event_id=ids[2], retry=True)
    assert InboundEvent.objects.get(pk=ids[2]).status == "processed"
