"""Work left behind between a commit and the task that should follow it: a webhook
delivery left ``retrying`` whose retry was never queued, and an agent's reply left
``queued`` whose send task failed after the outbox marked its event delivered. The sweeps
(beat and on-connect) pick both up; nothing received or written is lost."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import responses
from celery.exceptions import Retry
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from channels_app import services, tasks
from channels_app.models import InboundEvent
from channels_app.services import matching
from channels_app.tests.conftest import make_account, post_signed, wa_body
from support.celery import ON_CONNECT_TASKS
from support.delivery.models import Attempt, Delivery
from support.models import OutboxEvent
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
EAGER_OFF = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(task_always_eager=False)))


post = post_signed


def _age(event_id: int, seconds: float) -> None:
    """The event's last failure was recorded ``seconds`` ago."""
    InboundEvent.objects.filter(pk=event_id).update(
        updated_at=timezone.now() - timedelta(seconds=seconds),
        received_at=timezone.now() - timedelta(hours=1),
    )


def _failed_drain_with_broker_down(client: Client) -> tuple[Any, int]:
    """A delivery that fails in a drain (committed ``retrying``) while the broker refuses
    its retry task: the drain logs it and goes on instead of raising after the commit."""
    account = make_account("whatsapp")
    event_id = post(client, account, wa_body("34600000002", "wamid.bad", "please help")).json()[
        "id"
    ]

    def flaky(channel: str, message: Any) -> Any:
        raise RuntimeError("db hiccup")

    with (
        mock.patch("channels_app.services.bulk.ids_reserve", side_effect=RuntimeError("bulk")),
        mock.patch.object(matching, "_customer_lookup", flaky),
        mock.patch.object(
            tasks.inbound_event_process_task, "apply_async", side_effect=BrokerDown("down")
        ) as enqueue,
    ):
        assert tasks._drain_batches(EAGER_OFF, account.pk, lambda: None) == 1
    assert enqueue.call_count == 1
    return account, event_id


# --- inbound: a retrying event whose retry was never queued --------------------------------


def test_retrying_event_whose_retry_enqueue_failed_is_handed_back_to_the_drain(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHANNELS_INBOUND_MAX_ATTEMPTS = 5
    with caplog.at_level(logging.WARNING, logger="channels_app.tasks"):
        account, event_id = _failed_drain_with_broker_down(client)
    assert f"Could not enqueue the retry of inbound event {event_id}" in caplog.text
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("retrying", 1)

    # its retry (2 s, ±20 %) is not overdue yet: the sweep leaves it to its task
    with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
        assert services.inbound_event_sweep() == 0
    assert wake.call_count == 0
    assert InboundEvent.objects.get(pk=event_id).status == "retrying"

    # an hour later the beat's sweep hands it back to the drain and wakes it
    _age(event_id, 3600)
    with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
        assert services.inbound_event_sweep() == 1
    assert wake.call_args_list == [mock.call(account.pk)]
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts, event.error) == (
        "received",
        1,
        "RuntimeError: db hiccup",
    )

    # the drain processes it: one message, one more attempt counted, nothing else swept
    result = services.inbound_events_drain(account_id=account.pk)
    assert (result.taken, result.retries) == (1, [])
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("processed", 2)
    assert Message.objects.filter(channel_message_id="wamid.bad").count() == 1
    with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
        assert services.inbound_event_sweep(stale_seconds=0) == 0
    assert wake.call_count == 0


def test_a_retry_task_that_comes_after_the_hand_over_leaves_the_event_to_the_drain(
    client: Client, settings: Any
) -> None:
    settings.CHANNELS_INBOUND_MAX_ATTEMPTS = 5
    account, event_id = _failed_drain_with_broker_down(client)
    _age(event_id, 3600)
    with mock.patch("channels_app.services.drain.inbound_drain_wake"):
        assert services.inbound_event_sweep(stale_seconds=0) == 1
    # a retry task that was merely late (not lost) runs now: the drain owns the event
    tasks.inbound_event_process_task.apply(args=(event_id,), throw=True)
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("received", 1)
    assert not Message.objects.exists()
    assert services.inbound_events_drain(account_id=account.pk).taken == 1
    assert InboundEvent.objects.get(pk=event_id).status == "processed"
    # and once processed, a retry task finds nothing to do
    tasks.inbound_event_process_task.apply(args=(event_id,), throw=True)
    assert Message.objects.count() == 1
    assert InboundEvent.objects.get(pk=event_id).attempts == 2


@pytest.mark.parametrize(
    ("attempts", "not_yet", "overdue"),
    [
        (1, 2.0, 3.0),  # 2 s, at most 2.4 with jitter
        (5, 38.0, 39.0),  # 32 s, at most 38.4
        (12, 359.0, 361.0),  # capped at 300 s, at most 360
    ],
)
def test_a_retry_is_overdue_after_the_longest_delay_its_schedule_draws_plus_the_grace(
    client: Client, attempts: int, not_yet: float, overdue: float
) -> None:
    account = make_account("whatsapp")
    event_id = post(client, account, wa_body("34600000002", "wamid.r", "hi")).json()["id"]
    InboundEvent.objects.filter(pk=event_id).update(status="retrying", attempts=attempts)
    for grace in (0.0, 120.0):
        _age(event_id, not_yet + grace)
        with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
            assert services.inbound_event_sweep(stale_seconds=grace) == 0
        assert InboundEvent.objects.get(pk=event_id).status == "retrying"
        assert wake.call_count == 0
    _age(event_id, overdue + 120.0)
    with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
        assert services.inbound_event_sweep() == 1
    assert InboundEvent.objects.get(pk=event_id).status == "received"


def test_admin_reprocess_with_the_broker_down_is_committed_and_later_swept(
    client: Client, admin_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("whatsapp")
    event_id = post(client, account, wa_body("34600000002", "wamid.dead", "hi")).json()["id"]
    InboundEvent.objects.filter(pk=event_id).update(status="dead", attempts=5, error="was down")
    event = InboundEvent.objects.get(pk=event_id)
    with (
        mock.patch.object(
            tasks.inbound_event_process_task, "apply_async", side_effect=BrokerDown("down")
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.inbound_event_reprocess(event=event, actor=admin_user) is True
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("retrying", 0)
    _age(event_id, 5)
    with mock.patch("channels_app.services.drain.inbound_drain_wake") as wake:
        assert services.inbound_event_sweep(stale_seconds=0) == 1
    assert wake.call_args_list == [mock.call(account.pk)]
    services.inbound_events_drain(account_id=account.pk)
    assert Message.objects.filter(channel_message_id="wamid.dead").count() == 1


# --- outbound: a queued reply whose send task failed ---------------------------------------


def _reply_whose_send_task_failed(client: Client, agent: Any) -> Message:
    account = make_account("whatsapp")
    post(client, account, wa_body("34600000004", "wamid.in1", "hello"))
    services.inbound_events_drain(account_id=account.pk)
    ticket = Ticket.objects.get()
    reply = message_add(ticket=ticket, body="Hi, we are on it", author_user=agent)
    # the relay published the send task and marked the event delivered; the task then
    # failed for good (retries run out, a soft time limit, a killed worker)
    OutboxEvent.objects.update(delivered_at=timezone.now())
    with mock.patch(
        "channels_app.services.outbound_delivery_create", side_effect=RuntimeError("killed")
    ):
        result = tasks.outbound_message_send_task.apply(args=(reply.pk,), throw=False)
    assert result.state == "FAILURE"
    assert not Delivery.objects.exists()
    reply.refresh_from_db()
    assert reply.delivery_status == "queued"
    return reply


@responses.activate
def test_reply_whose_send_task_failed_is_given_its_delivery_by_the_sweep(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-REPLY"}]})
    reply = _reply_whose_send_task_failed(client, agent)
    # within two minutes its own task may still come: the beat's sweep waits
    assert services.outbound_replies_sweep() == 0
    assert not Delivery.objects.exists()

    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.outbound_replies_sweep() == 1
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.idempotency_key) == (
        "channel_reply",
        f"message:{reply.pk}",
    )
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert list(Attempt.objects.values_list("outcome", "http_status")) == [("success", 200)]
    assert len(responses.calls) == 1
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.channel_message_id) == ("sent", "wamid.SWEPT-REPLY")
    # idempotent: the sweep, the on-connect sweep or a late send task add nothing
    assert services.outbound_replies_sweep(stale_seconds=0) == 0
    tasks.outbound_message_send_task.apply(args=(reply.pk,), throw=True)
    assert Delivery.objects.count() == 1
    assert len(responses.calls) == 1


def test_the_sweep_skips_a_queued_reply_whose_delivery_is_pending(
    client: Client, agent: Any
) -> None:
    reply = _reply_whose_send_task_failed(client, agent)
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    # its delivery exists (waiting for a paused account, say): the engine owns it
    services.outbound_delivery_create(message_id=reply.pk)
    assert Delivery.objects.count() == 1
    with mock.patch("channels_app.services.outbound.outbound_delivery_create") as create:
        assert services.outbound_replies_sweep(stale_seconds=0) == 0
    assert create.call_count == 0


def test_the_sweep_does_not_send_a_reply_days_late_nor_retry_one_that_cannot_go(
    client: Client, agent: Any
) -> None:
    """With no age limit the sweep's first run sent every reply a lost task had left
    queued, weeks later; and a reply whose delivery can never be created (a permanent
    error) was tried again every minute, 500 of them filling every batch."""
    from support.errors import PermanentError

    reply = _reply_whose_send_task_failed(client, agent)
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(days=4))
    with mock.patch("channels_app.services.outbound.outbound_delivery_create") as create:
        assert services.outbound_replies_sweep(stale_seconds=0) == 1
    assert create.call_count == 0
    assert not Delivery.objects.exists()
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_error_code) == ("failed", "not_sent_in_time")
    assert "send it again if it still applies" in reply.delivery_error

    another = message_add(ticket=reply.ticket, body="Second try", author_user=agent)
    Message.objects.filter(pk=another.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    refused = PermanentError("the hand-off ticket is gone", error_code="ticket_gone")
    with mock.patch(
        "channels_app.services.outbound.outbound_delivery_create", side_effect=refused
    ) as create:
        assert services.outbound_replies_sweep(stale_seconds=0) == 1
        assert services.outbound_replies_sweep(stale_seconds=0) == 0  # not again
    assert create.call_count == 1
    another.refresh_from_db()
    assert (another.delivery_status, another.delivery_error_code) == ("failed", "ticket_gone")


def test_send_task_retries_when_the_database_goes_away(client: Client, agent: Any) -> None:
    reply = _reply_whose_send_task_failed(client, agent)
    with (
        mock.patch(
            "channels_app.services.outbound_delivery_create",
            side_effect=OperationalError("failover"),
        ),
        pytest.raises(Retry),  # scheduled again with backoff, not failed for good
    ):
        tasks.outbound_message_send_task.apply(args=(reply.pk,), throw=False)
    task: Any = tasks.outbound_message_send_task
    assert (task.max_retries, task.retry_backoff_max) == (5, 60)
    tasks.outbound_message_send_task.apply(args=(reply.pk,), throw=True)  # the retry
    assert Delivery.objects.get().idempotency_key == f"message:{reply.pk}"


def test_workers_run_the_reply_sweep_on_connect_and_the_beat_every_minute(
    settings: Any,
) -> None:
    assert ("channels_app.tasks.outbound_replies_sweep_task", {"stale_seconds": 0}) in (
        ON_CONNECT_TASKS
    )
    entry = settings.CELERY_BEAT_SCHEDULE["channels-outbound-sweep"]
    assert entry == {"task": "channels_app.tasks.outbound_replies_sweep_task", "schedule": 60.0}


def test_a_late_retry_task_leaves_an_event_that_failed_again_since_to_its_own_retry(
    client: Client,
) -> None:
    """A retry task late (its worker died holding it; redelivered later) while the sweep
    handed its event back to the drain and the drain failed it again (a new retry queued):
    the late task processed the event too and counted its failure, two retry chains
    running at once spent the event's attempts twice as fast."""
    from channels_app import tasks
    from channels_app.services import matching

    account = make_account("whatsapp")
    event_id = post(client, account, wa_body("34600000002", "wamid.bad", "please help")).json()[
        "id"
    ]

    def flaky(channel: Any, message: Any) -> Any:
        raise RuntimeError("db hiccup")

    def drain_fails() -> Any:
        with (
            mock.patch("channels_app.services.bulk.ids_reserve", side_effect=RuntimeError("bulk")),
            mock.patch.object(matching, "_customer_lookup", flaky),
            mock.patch.object(tasks.inbound_event_process_task, "apply_async") as enqueue,
        ):
            tasks._drain_batches(EAGER_OFF, account.pk, lambda: None)
        return enqueue

    first = drain_fails()  # T1 queued ("lost" for now)
    assert first.call_args.args[1] == {"attempts": 1}
    _age(event_id, 3600)
    with mock.patch("channels_app.services.drain.inbound_drain_wake"):
        services.inbound_event_sweep(stale_seconds=0)  # handed back to the drain
    second = drain_fails()  # T2 queued
    assert second.call_args.args[1] == {"attempts": 2}
    applied: list[int] = []
    real = services.drain._event_apply

    def spy(*args: Any, **kwargs: Any) -> Any:
        applied.append(1)
        return real(*args, **kwargs)

    with mock.patch.object(services.drain, "_event_apply", spy):
        late = services.inbound_event_process(event_id=event_id, retry=True, expected_attempts=1)
    assert late is None
    assert not applied  # T1 (queued after one failure) left it to T2
    final, attempts = services.inbound_event_fail(
        event_id=event_id, error="late", expected_attempts=1
    )
    assert (final, attempts) == (True, 2)  # T1's chain ends; nothing counted
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("retrying", 2)
