"""The threading rules: what a customer's message does to the ticket it threads into, and
the ticket's full-text search vector.

One place for every writer: ``tickets.services.message_add`` (one message, the
one-by-one path of the channels' intake, the API, the workbench) and the channels' bulk
drain (``channels_app.services.bulk``: many tickets in one statement) both apply
:func:`tickets_customer_message_apply`, and every search vector is built from
:data:`_VECTOR`. Add a rule here and both paths follow;
``channels_app/tests/test_drain_bulk.py`` checks that they give identical tickets.
(Which ticket a message threads into, the reopen window, is the channels'
``channels_app.selectors.customers_open_tickets``, also shared by both paths.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db import connection
from django.db.models import Expression

from tickets.models import Customer, Ticket, TicketStatus

# A customer's message reopens a ticket waiting on them or resolved (closed ones stay
# closed: the channels start a new ticket instead).
REOPENED_BY_CUSTOMER = (TicketStatus.PENDING, TicketStatus.RESOLVED)

SEARCH_MESSAGES = 20  # the conversation part: the latest public messages ...
SEARCH_CHARS = 20000  # ... newest first, joined by newlines, cut to this many characters

# subject (A), conversation (B), customer (C)
_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, {subject}), 'A') || "
    "setweight(to_tsvector('english'::regconfig, {text}), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, {who}), 'C')"
)


def customer_search_text(customer: Customer) -> str:
    """The customer part (weight C) of a ticket's search vector (``_row_vector_sql``'s
    ``who`` is the same text, read from the row)."""
    return f"{customer.name} {customer.email} {customer.phone}"


class TicketSearchVector(Expression):
    """The vector from values: a new ticket, before its rows exist.

    One fixed SQL fragment with three parameters: far cheaper to compile on the hot path
    than composing ``SearchVector`` objects, and the same vector.
    """

    output_field = SearchVectorField()
    template = _VECTOR.format(subject="%s", text="%s", who="%s")

    def __init__(self, subject: str, text: str, who: str) -> None:
        super().__init__()
        self.params = [subject, text[:SEARCH_CHARS], who]

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return self.template, list(self.params)


def _row_vector_sql(ticket: str) -> str:
    """The vector from the ticket's row (``ticket``: its table or alias), its latest
    public messages and its customer, as stored now. ``ticket`` is a table name or
    alias from our own code, never input; the numbers are constants."""
    text = (
        "left(coalesce((SELECT string_agg(r.body_text, E'\\n' "  # noqa: S608
        "ORDER BY r.created_at DESC, r.id DESC) FROM ("
        "SELECT m.id, m.body_text, m.created_at FROM tickets_message m "
        f"WHERE m.ticket_id = {ticket}.id AND m.kind = 'public' "
        f"ORDER BY m.created_at DESC, m.id DESC LIMIT {SEARCH_MESSAGES}) r), ''), "
        f"{SEARCH_CHARS})"
    )
    who = (
        "(SELECT c.name || ' ' || c.email || ' ' || c.phone FROM tickets_customer c "  # noqa: S608
        f"WHERE c.id = {ticket}.customer_id)"
    )
    return _VECTOR.format(subject=f"{ticket}.subject", text=text, who=who)


class TicketRowSearchVector(Expression):
    """The vector recomputed from the row, for ``Ticket`` updates
    (``.update(search_vector=TicketRowSearchVector())`` or a ``save(update_fields=…)``)."""

    output_field = SearchVectorField()

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return _row_vector_sql(connection.ops.quote_name(Ticket._meta.db_table)), []


def tickets_customer_message_apply(
    *, ticket_ids: Sequence[int], now: datetime
) -> list[tuple[Ticket, str]]:
    """Apply a customer's new message(s) (already inserted) to their tickets, in one
    UPDATE: last message time, waiting since (kept if already waiting), reopened when
    pending or resolved (:data:`REOPENED_BY_CUSTOMER`), and the search vector with the
    new messages. Locks the tickets in id order.

    Returns each ticket as it is now with its status before, in id order: the caller
    publishes ``ticket.updated`` for a status that changed.
    """
    if not ticket_ids:
        return []
    fields = Ticket._meta.concrete_fields
    columns = ", ".join(f't."{f.column}"' for f in fields)
    sql = (
        "UPDATE tickets_ticket AS t SET "  # noqa: S608 - names from model metadata
        "last_message_at = %(now)s, updated_at = %(now)s, "
        "waiting_since = COALESCE(t.waiting_since, %(now)s), "
        "status = CASE WHEN t.status = ANY(%(reopen)s) THEN %(open)s ELSE t.status END, "
        "resolved_at = CASE WHEN t.status = ANY(%(reopen)s) THEN NULL "
        "ELSE t.resolved_at END, "
        f"search_vector = {_row_vector_sql('t')} "
        "FROM (SELECT id, status FROM tickets_ticket WHERE id = ANY(%(ids)s) "
        "ORDER BY id FOR UPDATE) AS prev "
        f"WHERE t.id = prev.id RETURNING prev.status, {columns}"
    )
    params: dict[str, Any] = {
        "now": now,
        "reopen": [str(s) for s in REOPENED_BY_CUSTOMER],
        "open": str(TicketStatus.OPEN),
        "ids": sorted(set(ticket_ids)),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    attnames = [f.attname for f in fields]
    applied = [(Ticket.from_db(connection.alias, attnames, row[1:]), str(row[0])) for row in rows]
    applied.sort(key=lambda pair: pair[0].pk)
    # a reopened ticket's resolution clock runs again (docs/sla.md); imported here:
    # tickets.services imports this module
    from tickets.services.sla import tickets_sla_resume

    tickets_sla_resume([p for p in applied if p[0].status != p[1]], now=now)
    return applied
