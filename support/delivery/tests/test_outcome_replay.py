"""Replaying a finished delivery's hook for an integration's sweep
(``services.deliveries_outcome_replay``; review of 2026-12-07): counted, spaced out and
given up the one way re-drives are (``support.sweeps``), so a hook that fails for ever
stops being taken ahead of newer ones, and is left where a supervisor sees it and runs it
again (the deliveries admin, audited). Nothing is ever sent by a replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from support.delivery import selectors
from support.delivery import services as engine
from support.delivery.models import Delivery, OutcomeReplay
from support.delivery.registry import DeliveryChange, SendResult, target_kind_register
from support.delivery.tests.conftest import ScriptedTarget, enqueue
from support.models import AuditLog

pytestmark = pytest.mark.django_db


class Hook:
    """The kind's status hook: raises while ``broken``; records the events it got."""

    def __init__(self) -> None:
        self.broken = True
        self.events: list[tuple[str, str]] = []

    def __call__(self, delivery: Delivery, change: DeliveryChange) -> None:
        self.events.append((delivery.idempotency_key, change.event))
        if self.broken:
            raise LookupError(f"no message for {delivery.idempotency_key}")


@pytest.fixture
def hook(target: ScriptedTarget, monkeypatch: pytest.MonkeyPatch) -> Hook:
    hook = Hook()
    monkeypatch.setattr(target, "on_change", hook)
    target_kind_register(target.kind())
    return hook


def _finished(key: str) -> Delivery:
    """A delivery sent (succeeded) whose hook raised when the outcome was recorded."""
    delivery = enqueue(key)
    assert engine.delivery_attempt(delivery_id=delivery.pk).outcome == "success"
    return delivery


def _replay(*deliveries: Delivery, stale_seconds: float = 120.0) -> int:
    return engine.deliveries_outcome_replay(
        delivery_ids=[d.pk for d in deliveries], stale_seconds=stale_seconds, what="Test"
    )


def _due(*deliveries: Delivery) -> set[int]:
    due = selectors.outcome_replay_due_q(now=timezone.now(), stale_seconds=120.0)
    return set(
        Delivery.objects.filter(due, pk__in=[d.pk for d in deliveries]).values_list("pk", flat=True)
    )


def _wait_over(delivery: Delivery) -> None:
    OutcomeReplay.objects.filter(delivery=delivery).update(
        attempted_at=timezone.now() - timedelta(hours=1)
    )


def test_a_failing_replay_waits_longer_each_time_then_is_given_up(
    target: ScriptedTarget, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    delivery = _finished("k-1")
    assert _due(delivery) == {delivery.pk}  # never replayed: due at once
    assert hook.events == [("k-1", "succeeded")]

    assert _replay(delivery) == 0  # ran, and raised again
    replay = OutcomeReplay.objects.get(delivery=delivery)
    assert (replay.attempts, replay.given_up_at) == (1, None)
    assert replay.last_error == "LookupError: no message for k-1"
    assert _due(delivery) == set()  # waits (2 minutes) before the next
    assert _replay(delivery, stale_seconds=0) == 0  # a worker's sweep: the floor holds
    assert len(hook.events) == 2

    waits = []
    for n in range(2, 6):
        replay.refresh_from_db()
        waits.append(selectors.OUTCOME_REPLAY.wait(replay.attempts, 120.0))
        _wait_over(delivery)
        assert _replay(delivery) == 0
        assert OutcomeReplay.objects.get(delivery=delivery).attempts == n
    assert waits == [120.0, 240.0, 480.0, 960.0]
    assert len(hook.events) == 6

    _wait_over(delivery)  # due a sixth time: given up, the hook not run
    assert _replay(delivery) == 0
    replay.refresh_from_db()
    assert replay.given_up_at is not None
    assert replay.attempts == 5
    assert replay.last_error == "gave up after 5 re-drives: LookupError: no message for k-1"
    assert f"Test: delivery {delivery.pk}'s status update gave up after 5" in caplog.text
    assert len(hook.events) == 6
    _wait_over(delivery)
    assert _due(delivery) == set()
    assert _replay(delivery) == 0
    assert len(hook.events) == 6
    assert target.sent == ["k-1"]  # nothing is sent by a replay


def test_a_replay_that_works_counts_and_clears_the_error(
    target: ScriptedTarget, hook: Hook
) -> None:
    one, two = _finished("k-1"), _finished("k-2")
    assert _replay(one, two) == 0
    hook.broken = False
    _wait_over(one)
    assert _replay(one, two) == 1  # two still waits
    assert OutcomeReplay.objects.get(delivery=one).last_error == ""
    assert hook.events[-1] == ("k-1", "succeeded")


def test_an_open_delivery_is_not_replayed(target: ScriptedTarget, hook: Hook) -> None:
    target.script = [SendResult(http_status=503, error="busy")]
    delivery = enqueue("k-1")
    engine.delivery_attempt(delivery_id=delivery.pk)
    assert Delivery.objects.get(pk=delivery.pk).status == "retrying"
    assert _due(delivery) == set()
    assert _replay(delivery) == 0
    assert not OutcomeReplay.objects.exists()


def _given_up(delivery: Delivery) -> None:
    for _ in range(6):
        _wait_over(delivery)
        _replay(delivery)
    assert OutcomeReplay.objects.get(delivery=delivery).given_up_at is not None


def test_a_supervisor_finds_given_up_ones_and_runs_them_again(
    target: ScriptedTarget, hook: Hook, supervisor: Any
) -> None:
    stuck, fine = _finished("k-1"), _finished("k-2")
    _given_up(stuck)
    client = Client()
    client.force_login(supervisor)
    page = client.get("/admin/delivery/delivery/?outcome_replay=given_up")
    assert [row.pk for row in page.context["cl"].result_list] == [stuck.pk]
    detail = client.get(f"/admin/delivery/delivery/{stuck.pk}/change/").content.decode()
    assert "gave up after 5 re-drives: LookupError: no message for k-1" in detail

    hook.broken = False  # the cause fixed
    response = client.post(
        "/admin/delivery/delivery/",
        {"action": "replay_again", "_selected_action": [stuck.pk, fine.pk]},
    )
    assert response.status_code == 302
    replay = OutcomeReplay.objects.get(delivery=stuck)
    assert (replay.attempts, replay.attempted_at, replay.given_up_at) == (0, None, None)
    entry = AuditLog.objects.get(action="delivery.outcome_replayed_again")
    assert (entry.actor, entry.object_id, entry.details["replays"]) == (
        supervisor,
        str(stuck.pk),
        5,
    )
    assert _due(stuck) == {stuck.pk}
    assert _replay(stuck) == 1  # the sweep's next run
    assert hook.events[-1] == ("k-1", "succeeded")
    assert target.sent == ["k-1", "k-2"]


def test_staff_who_are_not_supervisors_cannot_run_them_again(
    target: ScriptedTarget, hook: Hook, django_user_model: Any
) -> None:
    from django.contrib.auth.models import Permission

    stuck = _finished("k-1")
    _given_up(stuck)
    clerk = django_user_model.objects.create_user("clerk", password="pw-1-tests", is_staff=True)
    clerk.user_permissions.add(
        Permission.objects.get(codename="view_delivery"),
        Permission.objects.get(codename="change_delivery"),
    )
    client = Client()
    client.force_login(clerk)
    client.post(
        "/admin/delivery/delivery/", {"action": "replay_again", "_selected_action": [stuck.pk]}
    )
    assert OutcomeReplay.objects.get(delivery=stuck).given_up_at is not None
    assert not AuditLog.objects.filter(action="delivery.outcome_replayed_again").exists()


def test_a_redriven_dead_letter_starts_its_replays_afresh(
    target: ScriptedTarget, hook: Hook, supervisor: Any
) -> None:
    target.script = [SendResult(http_status=400, error="refused")]
    delivery = enqueue("k-1")
    engine.delivery_attempt(delivery_id=delivery.pk)
    _given_up(delivery)
    assert engine.delivery_redrive(delivery_ids=[delivery.pk], actor=supervisor) == 1
    assert not OutcomeReplay.objects.filter(delivery=delivery).exists()
