"""The customer context's figures for ``GET /metrics`` (registered in
``tickets.context.wiring.connect``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from support.metrics import gauge
from tickets.context.models import ContextDeadLetterKind
from tickets.context.selectors import context_dead_letters_by_kind


def context_metrics() -> Iterator[Metric]:
    # A level, not a window (as support_outbox_failed and the other dead letters): an
    # alert rule "> 0" holds while anything waits for a supervisor, however old.
    dead = gauge(
        "context_dead_letters",
        "Customer-context work that gave up and waits for a supervisor's re-drive or "
        "discard (all time), by kind: interaction (an entry missing from a customer's "
        "history), csat_survey (a satisfaction survey not sent).",
        ["kind"],
    )
    counts = context_dead_letters_by_kind()
    for kind in ContextDeadLetterKind.values:
        dead.add_metric([kind], counts.get(kind, 0))
    yield dead
