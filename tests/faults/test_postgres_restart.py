"""PostgreSQL restarts (fast shutdown: every connection cut) in the middle of a drain of
1,000 queued inbound events.

The batch in flight rolls back whole with its connection; the drain task tries again once
the database is back; every event ends processed once, with one message each and no
ticket or customer created twice. The cluster is the test's own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import InterfaceError, OperationalError, connection

from channels_app.tests.conftest import make_account
from tests.faults.harness import PrivatePostgres, Worker, wait_until
from tests.faults.seed import assert_inbound_exactly_once, processed, queue_inbound

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

EVENTS = 1000
SENDERS = 40


def processed_or_zero() -> int:
    """``processed()``, or 0 while the database is (re)starting."""
    try:
        return processed()
    except (OperationalError, InterfaceError):
        connection.close()
        return 0


def test_postgres_restarted_mid_drain_processes_every_event_once(
    postgres: PrivatePostgres, workers: Callable[..., Worker]
) -> None:
    account = make_account("whatsapp")
    queue_inbound(account, EVENTS, SENDERS)
    # The worker's connection sweep wakes the drain.
    worker = workers("drain", database=postgres.url)
    wait_until(lambda: processed() > 0, timeout=90, interval=0.05, what="a batch committed")
    postgres.restart()
    connection.close()
    assert processed() < EVENTS  # restarted in the middle of the drain

    wait_until(lambda: processed_or_zero() == EVENTS, timeout=90, what="every event processed")
    assert_inbound_exactly_once(events=EVENTS, senders=SENDERS)
    assert worker.alive()
    assert "lost the database" in worker.log_path.read_text()
