"""The bounded event-loop teardown of async tests (support/testing/loop_teardown.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from support.testing import loop_teardown


async def _sleeper() -> None:
    await asyncio.sleep(3600)


async def _swallows_one_cancel() -> None:
    # the bug this guards against: the first cancellation is lost
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(3600)


async def _never_ends() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def _run_with(*coros):
    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(coro, name=coro.__name__) for coro in coros]
    loop.run_until_complete(asyncio.sleep(0))  # every task started
    return loop, tasks


def test_cancelled_tasks_end_quietly(capfd):
    loop, tasks = _run_with(_sleeper(), _sleeper())
    try:
        loop_teardown.cancel_all_tasks(loop, wait=1.0)
    finally:
        loop.close()
    assert all(task.cancelled() for task in tasks)
    assert "[loop teardown]" not in capfd.readouterr().err


def test_a_task_that_swallowed_a_cancel_is_named_and_cancelled_again(capfd):
    loop, tasks = _run_with(_sleeper(), _swallows_one_cancel())
    try:
        loop_teardown.cancel_all_tasks(loop, wait=0.2)
    finally:
        loop.close()
    assert all(task.cancelled() for task in tasks)
    err = capfd.readouterr().err
    assert "1 task(s) still pending" in err
    assert "_swallows_one_cancel" in err
    assert "test_a_task_that_swallowed_a_cancel_is_named" in err  # the test's id


def test_a_task_that_never_ends_fails_the_teardown_with_its_stack(capfd):
    loop, tasks = _run_with(_sleeper(), _never_ends())
    try:
        with pytest.raises(loop_teardown.LoopTeardownHung) as raised:
            loop_teardown.cancel_all_tasks(loop, wait=0.1)
        assert "_never_ends" in str(raised.value)
        assert "1 task(s) did not end when cancelled 3 times" in str(raised.value)
        assert tasks[0].cancelled()
    finally:
        # let the test leave nothing behind: stop the task by closing its coroutine
        tasks[1].get_coro().close()  # type: ignore[union-attr]
        loop.close()


def test_async_tests_close_their_loops_through_it():
    import asyncio.runners

    assert asyncio.runners._cancel_all_tasks is loop_teardown.cancel_all_tasks  # type: ignore[attr-defined]
