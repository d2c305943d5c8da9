"""An async test's event loop that cannot close says which test and which task.

At the end of an async test pytest-asyncio closes the test's ``asyncio.Runner``, which
cancels every task still pending on the loop (a socket's consumer the test did not
disconnect, a batch built in a task of its own, the channel layer's receive) and then waits
for them with no limit. A task that does not end when cancelled (one that swallowed the
cancellation, or waits on something that never comes) kept a CI worker waiting for ever
once (2026-12-07, docs/operations.md "A test that hangs"), and the thread dump could not
say which test or task.

:func:`install` replaces that wait (``asyncio.runners._cancel_all_tasks``, the function
``Runner.close`` calls) with a bounded one: the tasks are cancelled and waited for up to
``WAIT`` seconds; those still pending are written to stderr with the test's id and each
task's stack, and cancelled again (a task that swallowed one cancellation ends on the
next); a task still pending after that fails the test's teardown with the same report,
instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import io
import os
from collections.abc import Callable, Iterable
from typing import Any

#: seconds to wait for the cancelled tasks, each round
WAIT = 30.0
#: rounds of cancelling before the teardown fails
ROUNDS = 3

_original: Callable[[asyncio.AbstractEventLoop], None] | None = None
#: the running test's id, for the report (the root conftest.py gives pytest's)
_current_test: Callable[[], str] = lambda: "(no test)"  # noqa: E731


class LoopTeardownHung(Exception):
    """Tasks still pending after being cancelled ``ROUNDS`` times. Not a ``RuntimeError``:
    pytest-asyncio turns one raised by the runner's close into a warning, and the test
    would pass."""


def describe(tasks: Iterable[asyncio.Task[Any]]) -> str:
    """Each task's name, coroutine and stack, as ``Task.print_stack`` writes them."""
    out = io.StringIO()
    for task in tasks:
        out.write(f"--- {task!r}\n")
        task.print_stack(file=out)
    return out.getvalue()


def _report(text: str) -> None:
    # Straight to the process's stderr: under xdist a worker's sys.stderr may be captured.
    os.write(2, text.encode("utf-8", "replace"))


def cancel_all_tasks(loop: asyncio.AbstractEventLoop, *, wait: float | None = None) -> None:
    """``asyncio.runners._cancel_all_tasks`` with a limit (module docstring)."""
    limit = WAIT if wait is None else wait
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    pending: set[asyncio.Task[Any]] = set(to_cancel)
    for round_ in range(1, ROUNDS + 1):
        for task in pending:
            task.cancel()
        _, pending = loop.run_until_complete(asyncio.wait(pending, timeout=limit))
        if not pending:
            break
        test = _current_test()
        _report(
            f"\n[loop teardown] {test}: {len(pending)} task(s) still pending {limit:.0f} s "
            f"after cancellation (round {round_} of {ROUNDS}):\n{describe(pending)}\n"
        )
    for task in to_cancel:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if pending:
        test = _current_test()
        raise LoopTeardownHung(
            f"{test}: {len(pending)} task(s) did not end when cancelled {ROUNDS} times:\n"
            f"{describe(pending)}"
        )


def install(current_test: Callable[[], str] | None = None) -> None:
    """Close loops through :func:`cancel_all_tasks`; ``current_test`` names the running
    test in its reports."""
    global _original, _current_test
    if current_test is not None:
        _current_test = current_test
    if _original is None:
        _original = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]
        asyncio.runners._cancel_all_tasks = cancel_all_tasks  # type: ignore[attr-defined]


def uninstall() -> None:
    global _original
    if _original is not None:
        asyncio.runners._cancel_all_tasks = _original  # type: ignore[attr-defined]
        _original = None


__all__ = ["LoopTeardownHung", "cancel_all_tasks", "describe", "install", "uninstall"]
