"""The SLA checker (every minute) reads partial indexes that hold only the tickets whose
clock runs, not the resolved and closed history (tickets.models:
``ticket_first_response_due_idx``, ``ticket_resolution_due_idx``). The inbox's and
dashboard's breached / at-risk filters (``tickets.selectors.sla_due_q``) carry the same
conditions, so the indexes serve their arms too; nothing reads the dropped plain ones.

Plans, not timings: the table is filled with mostly resolved tickets, analysed, and
``enable_seqscan`` is off so the plan shows whether an index can serve the query."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tickets.models import SlaEventKind, SlaTarget, Ticket
from tickets.services.sla import FIRST_RESPONSE_OPEN, RESOLUTION_OPEN, _candidates

pytestmark = pytest.mark.django_db

INDEX = {
    SlaTarget.FIRST_RESPONSE: "ticket_first_response_due_idx",
    SlaTarget.RESOLUTION: "ticket_resolution_due_idx",
}


def _fill(customer: Any) -> None:
    """3,000 resolved tickets (due long ago, answered and resolved), 30 open ones past
    due and 1,000 due in the future."""
    now = timezone.now()

    def ticket(minutes: int, status: str) -> Ticket:
        due = now + timedelta(minutes=minutes)
        done = status == "resolved"
        return Ticket(
            customer=customer,
            subject="t",
            status=status,
            first_response_due_at=due,
            resolution_due_at=due + timedelta(days=1),
            first_response_at=now - timedelta(days=365) if done else None,
            resolved_at=now if done else None,
        )

    rows = [ticket(-500_000 + i, "resolved") for i in range(3000)]
    rows += [ticket(-2000 + i, "open") for i in range(30)]
    rows += [ticket(10 + i, "open") for i in range(1000)]
    Ticket.objects.bulk_create(rows, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tickets_ticket")
        cursor.execute("SET LOCAL enable_seqscan = off")


@pytest.mark.parametrize("kind", [SlaEventKind.BREACHED, SlaEventKind.WARNING])
@pytest.mark.parametrize("target", [SlaTarget.FIRST_RESPONSE, SlaTarget.RESOLUTION])
def test_the_checker_reads_the_running_clocks_index(customer, target, kind) -> None:
    _fill(customer)
    query = _candidates(target, kind, timezone.now()).values_list("pk", flat=True)[:200]
    plan = query.explain()
    assert INDEX[target] in plan, plan


def test_the_indexes_hold_what_the_checker_asks_for(customer) -> None:
    """The partial indexes' conditions are the checker's: a status added to
    ``FIRST_RESPONSE_OPEN`` or ``RESOLUTION_OPEN`` without the index would fall back to
    reading the history."""
    indexes = {index.name: index for index in Ticket._meta.indexes}
    conditions = {
        name: dict(indexes[name].condition.children)  # type: ignore[union-attr]
        for name in INDEX.values()
    }
    assert conditions[INDEX[SlaTarget.FIRST_RESPONSE]] == {
        "first_response_due_at__isnull": False,
        "first_response_at__isnull": True,
        "status__in": list(FIRST_RESPONSE_OPEN),
    }
    assert conditions[INDEX[SlaTarget.RESOLUTION]] == {
        "resolution_due_at__isnull": False,
        "sla_paused_at__isnull": True,
        "status__in": list(RESOLUTION_OPEN),
    }


def test_no_index_of_every_tickets_due_time_is_left() -> None:
    """The plain ``db_index`` of the due times (every resolved ticket, written on each
    insert) is dropped: nothing reads it any more."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "tickets_ticket")
    on_due = sorted(
        name
        for name, info in found.items()
        if info["index"] and {"first_response_due_at", "resolution_due_at"} & set(info["columns"])
    )
    assert on_due == sorted(INDEX.values())
