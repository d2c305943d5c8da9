"""The hourly delivery purge (``services.deliveries_purge``): finished deliveries and their
attempt logs go ``DELIVERY_RETENTION_DAYS`` after they finished, in bounded batches found
through ``delivery_finished_idx``; open ones, dead letters a re-drive could still send,
possible duplicates and status updates given up stay; 0 keeps everything."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from support.celery import app
from support.delivery import services as engine
from support.delivery.models import Attempt, Delivery, OutcomeReplay
from support.delivery.registry import SendResult
from support.delivery.tasks import deliveries_purge_task
from support.delivery.tests.conftest import ScriptedTarget, enqueue
from support.models import AuditLog

pytestmark = pytest.mark.django_db

FAIL = SendResult(http_status=503, error="busy")


def _finish(key: str, target: ScriptedTarget, *answers: Any, **extra: Any) -> Delivery:
    """A delivery attempted once per scripted answer (each due at once)."""
    target.script = list(answers)
    delivery = enqueue(key, **extra)
    for n in range(len(answers)):
        engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=n)
    delivery.refresh_from_db()
    return delivery


def _age(delivery: Delivery, days: float) -> None:
    """Finished (and created) ``days`` ago."""
    at = timezone.now() - timedelta(days=days)
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=at,
        updated_at=at,
        completed_at=at if delivery.status in ("succeeded", "dead") else None,
    )


def _left() -> set[str]:
    return set(Delivery.objects.values_list("idempotency_key", flat=True))


@pytest.fixture
def deliveries(target: ScriptedTarget) -> dict[str, Delivery]:
    found = {
        # finished long ago, nothing to act on: purged
        "sent_old": _finish("sent_old", target, FAIL, SendResult(http_status=200)),
        "expired_dead_old": _finish(  # never sent: its claim found it expired
            "expired_dead_old",
            target,
            SendResult(http_status=200),
            expires_at=timezone.now() - timedelta(days=91),
        ),
        "replayed_old": _finish("replayed_old", target, SendResult(http_status=200)),
        # kept
        "sent_recent": _finish("sent_recent", target, SendResult(http_status=200)),
        "pending_old": enqueue("pending_old"),
        "retrying_old": _finish("retrying_old", target, FAIL),
        "dead_old": _finish("dead_old", target, SendResult(http_status=422, error="no")),
        "duplicate_old": _finish("duplicate_old", target, SendResult(http_status=200)),
        "given_up_old": _finish("given_up_old", target, SendResult(http_status=200)),
        "replay_failing_old": _finish("replay_failing_old", target, SendResult(http_status=200)),
    }
    assert (found["expired_dead_old"].status, target.sent.count("expired_dead_old")) == ("dead", 0)
    assert found["dead_old"].status == "dead"
    assert found["retrying_old"].status == "retrying"
    assert found["sent_old"].status == "succeeded"
    for key, delivery in found.items():
        if key != "sent_recent":
            _age(delivery, 91)
    _age(found["sent_recent"], 89)
    # an open one leased now by a worker (old, with a lease): never touched
    Delivery.objects.filter(pk=found["retrying_old"].pk).update(
        lease_owner="worker-1", lease_until=timezone.now() + timedelta(seconds=60)
    )
    Delivery.objects.filter(pk=found["duplicate_old"].pk).update(possible_duplicate=True)
    now = timezone.now()
    OutcomeReplay.objects.create(delivery=found["replayed_old"], attempts=1, attempted_at=now)
    OutcomeReplay.objects.create(
        delivery=found["given_up_old"], attempts=5, last_error="gave up", given_up_at=now
    )
    OutcomeReplay.objects.create(
        delivery=found["replay_failing_old"], attempts=2, last_error="LookupError: no message"
    )
    return found


def test_only_finished_deliveries_nothing_can_act_on_go_with_their_attempts(
    deliveries: dict[str, Delivery], caplog: pytest.LogCaptureFixture
) -> None:
    purged = {"sent_old", "expired_dead_old", "replayed_old"}
    gone = [deliveries[key].pk for key in purged]
    assert Attempt.objects.filter(delivery_id__in=gone).count() == 4
    kept_attempts = Attempt.objects.exclude(delivery_id__in=gone).count()
    kept_replays = OutcomeReplay.objects.exclude(delivery_id__in=gone).count()

    with caplog.at_level(logging.INFO, logger="support.delivery.services"):
        result = engine.deliveries_purge()

    assert (result.deleted, result.dead_letters_kept) == (3, 1)
    assert _left() == set(deliveries) - purged
    # their attempt logs and replay records went with them; nothing else did
    assert not Attempt.objects.filter(delivery_id__in=gone).exists()
    assert Attempt.objects.count() == kept_attempts
    assert OutcomeReplay.objects.count() == kept_replays == 2
    leased = Delivery.objects.get(pk=deliveries["retrying_old"].pk)
    assert (leased.status, leased.lease_owner) == ("retrying", "worker-1")
    messages = [r.getMessage() for r in caplog.records]
    assert "Deliveries purged (finished more than 90 days ago): 3, with 4 attempt(s)" in messages
    assert "Deliveries: 1 dead letter(s) older than 90 days are kept until re-driven" in messages

    # idempotent: nothing more goes
    assert engine.deliveries_purge().deleted == 0
    assert _left() == set(deliveries) - purged


def test_a_dead_letter_kept_can_still_be_redriven_and_then_goes_in_time(
    deliveries: dict[str, Delivery], target: ScriptedTarget, supervisor: Any
) -> None:
    dead = deliveries["dead_old"]
    engine.deliveries_purge()
    assert engine.delivery_redrive(delivery_ids=[dead.pk], actor=supervisor) == 1
    target.script = [SendResult(http_status=200)]
    assert engine.delivery_attempt(delivery_id=dead.pk).status == "succeeded"
    assert engine.deliveries_purge().deleted == 0  # finished again just now
    later = timezone.now() + timedelta(days=91)
    assert engine.deliveries_purge(now=later).deleted >= 1
    assert not Delivery.objects.filter(pk=dead.pk).exists()
    # the audit log's record of the re-drive outlives the delivery
    assert AuditLog.objects.filter(action="delivery.redriven", object_id=str(dead.pk)).exists()


def test_a_backlog_goes_in_bounded_batches_over_several_runs(target: ScriptedTarget) -> None:
    for n in range(5):
        _age(_finish(f"k-{n}", target, FAIL, SendResult(http_status=200)), 100)
    with CaptureQueriesContext(connection) as captured:
        assert engine.deliveries_purge(batch=2, max_batches=2).deleted == 4
    statements = [q["sql"] for q in captured.captured_queries]
    deletes = [s for s in statements if s.startswith('DELETE FROM "delivery_delivery"')]
    assert len(deletes) == 2  # one per batch, each in its own (short) transaction
    # deleted by id: no payload is read into memory
    assert not [s for s in statements if '"delivery_delivery"."payload"' in s]
    assert Delivery.objects.count() == 1
    assert Attempt.objects.count() == 2

    assert engine.deliveries_purge(batch=2, max_batches=2).deleted == 1  # the next run
    assert not Delivery.objects.exists()
    assert not Attempt.objects.exists()
    assert engine.deliveries_purge(batch=2, max_batches=2).deleted == 0


def test_the_deliveries_to_delete_are_found_through_the_finished_index() -> None:
    """A condition the index does not serve read every delivery kept (90 days of replies,
    syncs and notifications) on each hourly run."""
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            target_kind="test_target",
            idempotency_key=f"k-{n}",
            status="succeeded",
            completed_at=now - timedelta(days=99.995 - n / 100),
        )
        for n in range(3000)  # from 100 days ago to 70, oldest first as they come
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE delivery_delivery")
    with CaptureQueriesContext(connection) as captured:
        assert engine.deliveries_purge(days=99).deleted == 100
    (first,) = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith('SELECT "delivery_delivery"."id"') and "LIMIT" in q["sql"]
    ][:1]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {first}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "delivery_finished_idx" in plan, plan


def test_zero_days_keeps_every_delivery(deliveries: dict[str, Delivery], settings: Any) -> None:
    settings.DELIVERY_RETENTION_DAYS = 0
    assert deliveries_purge_task.delay().get() == 0
    assert _left() == set(deliveries)
    settings.DELIVERY_RETENTION_DAYS = 90
    assert deliveries_purge_task.delay().get() == 3


def test_the_purge_runs_hourly_from_beat() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["delivery-purge"]
    assert entry == {"task": "support.delivery.tasks.deliveries_purge_task", "schedule": 3600.0}
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert django_settings.DELIVERY_RETENTION_DAYS == 90
