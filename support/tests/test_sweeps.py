"""The one way of re-driving lost work (``support.sweeps``): when a row is due, when it
is given up and in which words, and that a re-drive is counted before its task is queued.

The rows are call events, a table that re-drives this way (``attempts``,
``attempted_at``, ``status``); nothing of the calls app runs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from calls.models import CallEvent, EventStatus
from support.sweeps import RedrivePolicy, redrive_queue

DOUBLING = RedrivePolicy(wait_seconds=120, floor_seconds=60, max_redrives=5)
FIXED = RedrivePolicy(wait_seconds=300, floor_seconds=120, max_redrives=5, backoff=1.0)


def test_the_first_wait_is_the_policy_s_shortened_to_the_caller_s_never_under_the_floor() -> None:
    assert DOUBLING.base_wait(120) == 120  # the beat
    assert DOUBLING.base_wait(90) == 90
    assert DOUBLING.base_wait(0) == 60  # a worker connecting asks for none: the floor
    assert DOUBLING.base_wait(3600) == 120  # never longer than the policy's
    assert FIXED.base_wait(0) == 120


def test_the_wait_doubles_at_each_re_drive_after_the_first_and_stops_at_the_last() -> None:
    assert [DOUBLING.wait(n, 120) for n in range(8)] == [
        120,
        120,
        240,
        480,
        960,
        1920,
        1920,
        1920,
    ]
    assert [DOUBLING.wait(n, 0) / 60 for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert {FIXED.wait(n, 300) for n in range(8)} == {300}
    assert {FIXED.wait(n, 0) for n in range(8)} == {120}


@pytest.mark.parametrize(
    "fields",
    [
        {"wait_seconds": 60, "floor_seconds": 0, "max_redrives": 5},
        {"wait_seconds": 30, "floor_seconds": 60, "max_redrives": 5},
        {"wait_seconds": 60, "floor_seconds": 60, "max_redrives": 0},
        {"wait_seconds": 60, "floor_seconds": 60, "max_redrives": 5, "backoff": 0.5},
    ],
)
def test_a_policy_without_a_floor_a_bound_or_with_a_shrinking_wait_is_refused(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="re-drive policy"):
        RedrivePolicy(**fields)


def test_spent_after_max_redrives_and_one_wording_of_the_give_up() -> None:
    assert [DOUBLING.spent(n) for n in (0, 4, 5, 6)] == [False, False, True, True]
    assert (
        RedrivePolicy.give_up_reason(5, "last try: RuntimeError: boom", "never finished")
        == "gave up after 5 re-drives: last try: RuntimeError: boom"
    )
    assert (
        RedrivePolicy.give_up_reason(5, "", "its task never finished")
        == "gave up after 5 re-drives: its task never finished"
    )


def _event(name: str, attempts: int, attempted_at: datetime | None) -> int:
    return CallEvent.objects.create(
        source="ctr",
        external_id=name,
        status=EventStatus.RECEIVED,
        attempts=attempts,
        attempted_at=attempted_at,
    ).pk


def _due(policy: RedrivePolicy, now: datetime, stale_seconds: float) -> set[int]:
    return set(
        CallEvent.objects.filter(policy.due_q(now, stale_seconds)).values_list("pk", flat=True)
    )


@pytest.mark.django_db
@pytest.mark.parametrize("stale_seconds", [120, 0])
def test_due_exactly_when_the_wait_after_the_last_re_drive_is_over(stale_seconds: float) -> None:
    """Each count at its own wait, one second either side of the boundary, and on it: the
    wait must be over (strictly before ``now - wait``); never re-driven is due at once."""
    now = timezone.now()
    due, not_due = {_event("never", 0, None)}, set()
    for n in range(DOUBLING.max_redrives + 3):
        edge = now - timedelta(seconds=DOUBLING.wait(n, stale_seconds))
        due.add(_event(f"over-{n}", n, edge - timedelta(seconds=1)))
        not_due.add(_event(f"on-{n}", n, edge))
        not_due.add(_event(f"within-{n}", n, edge + timedelta(seconds=1)))
    assert _due(DOUBLING, now, stale_seconds) == due


@pytest.mark.django_db
def test_a_fixed_policy_waits_the_same_whatever_the_count() -> None:
    now = timezone.now()
    due = {_event("never", 0, None)}
    for n in (0, 1, 4, 5, 9):
        due.add(_event(f"over-{n}", n, now - timedelta(seconds=301)))
        _event(f"within-{n}", n, now - timedelta(seconds=299))
        _event(f"on-connect-{n}", n, now - timedelta(seconds=119))
    assert _due(FIXED, now, 300) == due
    on_connect = _due(FIXED, now, 0)  # the floor: 2 minutes
    assert on_connect == due | set(
        CallEvent.objects.filter(external_id__startswith="within-").values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_each_re_drive_is_counted_before_its_task_is_queued() -> None:
    now = timezone.now()
    first, done, second = (_event(name, 0, None) for name in ("a", "b", "c"))
    CallEvent.objects.filter(pk=done).update(status=EventStatus.PROCESSED)  # its task ran
    seen: list[tuple[int, int, datetime | None]] = []

    def queue(pk: int) -> None:
        event = CallEvent.objects.get(pk=pk)
        seen.append((pk, event.attempts, event.attempted_at))

    pending = CallEvent.objects.filter(status=EventStatus.RECEIVED)
    assert redrive_queue(
        pending, [first, done, second], queue=queue, now=now, what="Test", due=Q()
    ) == [
        first,
        second,
    ]
    assert seen == [(first, 1, now), (second, 1, now)]  # never queued uncounted
    assert CallEvent.objects.get(pk=done).attempts == 0  # finished meanwhile: left alone


@pytest.mark.django_db
def test_a_broker_refusal_stops_the_run_logged_and_leaves_the_rest_for_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = timezone.now()
    ids = [_event(name, 0, None) for name in ("a", "b", "c")]
    queued: list[int] = []

    def queue(pk: int) -> None:
        if pk == ids[1]:
            raise BrokerDown("Error 111 connecting to redis:6379. Connection refused.")
        queued.append(pk)

    pending = CallEvent.objects.filter(status=EventStatus.RECEIVED)
    with caplog.at_level(logging.WARNING, logger="support.sweeps"):
        assert redrive_queue(pending, ids, queue=queue, now=now, what="Test", due=Q()) == [ids[0]]
    assert queued == [ids[0]]
    attempts = dict(CallEvent.objects.filter(pk__in=ids).values_list("pk", "attempts"))
    # The refused one's re-drive is spent (counted first); the one after it is untouched.
    assert attempts == {ids[0]: 1, ids[1]: 1, ids[2]: 0}
    assert [r.getMessage() for r in caplog.records] == [
        "Test sweep: the broker is unreachable (OperationalError); 1 queued, the rest left "
        "for the next run"
    ]


@pytest.mark.django_db
def test_two_sweeps_side_by_side_count_a_re_drive_once() -> None:
    # Every worker connecting to the broker sends the sweep: several run at once after a
    # deploy. Both read the same due rows; the second's count must find the first's and
    # skip the row, or a live event reaches the re-drive limit after a few such bursts.
    now = timezone.now()
    ids = [_event(name, 0, None) for name in ("a", "b")]
    pending = CallEvent.objects.filter(status=EventStatus.RECEIVED)
    due = DOUBLING.due_q(now, 0)
    read_by_both = list(pending.filter(due, pk__in=ids).values_list("pk", flat=True))
    queued: list[int] = []
    first = redrive_queue(pending, read_by_both, queue=queued.append, now=now, what="A", due=due)
    second = redrive_queue(pending, read_by_both, queue=queued.append, now=now, what="B", due=due)
    assert (sorted(first), second) == (sorted(ids), [])
    assert sorted(queued) == sorted(ids)
    assert set(CallEvent.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
