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


def test_an_async_test_whose_task_never_ends_fails_its_teardown(pytester, monkeypatch):
    """Through pytest-asyncio's own runner: the test is reported as an error at teardown
    naming the task (a RuntimeError there becomes a warning and the test passed)."""
    from pathlib import Path

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(
        "from support.testing import loop_teardown\n"
        "loop_teardown.WAIT = 0.1\n"
        "loop_teardown.install()\n"
    )
    pytester.makepyfile(
        test_hangs="""
import asyncio

async def _never_ends():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue

async def test_leaves_a_task_behind():
    asyncio.get_running_loop().create_task(_never_ends(), name="left-behind")
    await asyncio.sleep(0)
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:django", "-p", "no:randomly", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*LoopTeardownHung*did not end when cancelled 3 times*"])
    assert "left-behind" in result.stdout.str() + result.stderr.str()
