"""One way to re-drive lost work: the sweeps that queue again a recorded item whose task
was lost (the broker down at the commit, a worker killed, an error the task does not
record), counting each re-drive on the row, spacing them out, and giving up after a few
with the reason.

A sweep that re-drives this way keeps two columns on its rows, ``attempts`` (re-drives
so far) and ``attempted_at`` (when the last one was queued, or when the work last showed
it is alive), and describes itself with a ``RedrivePolicy``:

* ``due_q``: rows never re-driven, or whose wait after their last re-drive is over. The
  wait is ``wait_seconds`` (shortened to the caller's ``stale_seconds``: the sweep a
  worker sends on connecting asks for 0), never less than ``floor_seconds``, multiplied
  by ``backoff`` at each re-drive after the first. The floor is what keeps the sweeps
  sent on every broker connection (several in a row during a deploy) from counting
  re-drives against work whose task is alive, still waiting in the queue.
* ``spent``: a row re-driven ``max_redrives`` times that is due again is given up, with
  ``give_up_reason``'s words ("gave up after 5 re-drives: <the last error>").
* ``redrive_queue``: each row is counted *before* its task is queued (a task is never
  queued uncounted); a broker error stops the run, logged, and the next run goes on.

The sweep keeps what is its own: which rows are pending and how old they must be (its
partial index), how a given-up row is marked, what else it checks first. The reply
sweep's replays of a sent reply's status update are on it too, counted on a row of their
own (``support.delivery.models.OutcomeReplay``: ``Delivery.attempts`` counts sends).
Sweeps that do not count re-drives (the delivery engine's leases, the drain's retry
schedule, the media sweep, the reply sweep's creation of missing deliveries) are not on
this; why: docs/operations.md#re-driving-lost-work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q, QuerySet
from kombu.exceptions import KombuError

logger = logging.getLogger(__name__)

#: What queueing a task raises when the broker cannot take it (Celery re-raises the
#: transport's connection errors as kombu's ``OperationalError``; a socket error as is).
BROKER_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError)


@dataclass(frozen=True)
class RedrivePolicy:
    """How a sweep spaces and bounds its re-drives (see the module's docstring)."""

    #: The wait after a re-drive before the next one (the first wait).
    wait_seconds: float
    #: The least wait, whatever ``stale_seconds`` a caller asks for.
    floor_seconds: float
    #: Re-drives after which a row still pending (and due again) is given up.
    max_redrives: int
    #: The wait is multiplied by this at each re-drive after the first; 1.0: fixed.
    backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.floor_seconds <= 0 or self.wait_seconds < self.floor_seconds:
            raise ValueError("a re-drive policy needs 0 < floor_seconds <= wait_seconds")
        if self.max_redrives < 1 or self.backoff < 1.0:
            raise ValueError("a re-drive policy needs max_redrives >= 1 and backoff >= 1")

    def base_wait(self, stale_seconds: float) -> float:
        """The first wait for a sweep asked for ``stale_seconds``: ``wait_seconds``, or
        less when the caller asks for less, never under ``floor_seconds``."""
        return max(min(stale_seconds, self.wait_seconds), self.floor_seconds)

    def wait(self, attempts: int, stale_seconds: float) -> float:
        """How long after its last re-drive a row re-driven ``attempts`` times waits (a
        row given up waits as long as after the last re-drive)."""
        steps = max(min(attempts, self.max_redrives) - 1, 0)
        return self.base_wait(stale_seconds) * self.backoff**steps

    def due_q(self, now: datetime, stale_seconds: float) -> Q:
        """Rows never re-driven (``attempted_at`` empty) or whose wait after their last
        re-drive is over (``attempted_at`` strictly before ``now - wait``). A filter on
        those two columns alone: AND it with the sweep's pending condition, which its
        partial index covers."""
        due = Q(attempted_at__isnull=True)
        if self.backoff == 1.0:  # one wait for every count: one condition
            since = now - timedelta(seconds=self.wait(0, stale_seconds))
            return due | Q(attempted_at__lt=since)
        for n in range(self.max_redrives + 1):
            since = now - timedelta(seconds=self.wait(n, stale_seconds))
            due |= Q(attempts=n, attempted_at__lt=since)
        since = now - timedelta(seconds=self.wait(self.max_redrives, stale_seconds))
        return due | Q(attempts__gt=self.max_redrives, attempted_at__lt=since)

    def spent(self, attempts: int) -> bool:
        """Whether a row re-driven ``attempts`` times is given up rather than queued."""
        return attempts >= self.max_redrives

    @staticmethod
    def give_up_reason(attempts: int, error: str, default: str) -> str:
        """The one wording of a give-up: the last error recorded, else ``default``."""
        return f"gave up after {attempts} re-drives: {error or default}"


def redrive_queue(
    pending: QuerySet[Any],
    ids: Iterable[int],
    *,
    queue: Callable[[int], object],
    now: datetime,
    what: str,
    due: Q,
) -> list[int]:
    """Re-drive the rows ``ids`` in order: count each one (``attempts`` + 1,
    ``attempted_at`` = ``now``) while it is still in ``pending`` and still ``due`` (the
    policy's ``due_q`` the rows were read with), then queue its task (``queue(pk)``). A row
    no longer pending (its task finished meanwhile) or no longer due is skipped: two sweeps
    run side by side (every worker connecting to the broker sends one) read the same due
    rows, and the second one's count finds the first one's ``attempted_at`` (the update
    re-reads the row once the other's commit releases it), so a re-drive is counted once.
    Counted *before* it is queued: a task is never queued uncounted. When the broker
    refuses a task the run stops, logged (``what`` names the sweep): that row's re-drive
    is spent without its task, and it is queued again after its wait; the rows after it
    are left as they were for the next run. Returns the ids queued."""
    queued: list[int] = []
    for pk in ids:
        counted = pending.filter(due, pk=pk).update(attempts=F("attempts") + 1, attempted_at=now)
        if not counted:
            continue
        try:
            queue(pk)
        except BROKER_ERRORS as exc:
            logger.warning(
                "%s sweep: the broker is unreachable (%s); %d queued, the rest left for "
                "the next run",
                what,
                type(exc).__name__,
                len(queued),
            )
            break
        queued.append(pk)
    return queued
