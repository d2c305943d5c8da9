"""The search vector has two forms in ``tickets.thread_rules``: from values (a new
ticket, before its rows exist) and from the row (every update, one by one and in bulk).
They must give the same vector, or a ticket's vector would depend on which path wrote it
last."""

from __future__ import annotations

import pytest
from django.db import connection

from tickets import services
from tickets.models import Customer, Ticket
from tickets.thread_rules import TicketRowSearchVector

pytestmark = pytest.mark.django_db


def _vector(ticket: Ticket) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM tickets_ticket WHERE id = %s", [ticket.pk])
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def test_a_new_tickets_vector_is_the_one_its_row_gives() -> None:
    customer = Customer.objects.create(name="Ana Díaz", email="ana@example.com", phone="+34 600")
    ticket = services.ticket_create(
        customer=customer, subject="Parcel lost in transit", body="Tracking ZX9 says returned"
    )
    from_values = _vector(ticket)
    Ticket.objects.filter(pk=ticket.pk).update(search_vector=TicketRowSearchVector())
    assert _vector(ticket) == from_values
    assert "zx9" in from_values
    assert "ana@example.com" in from_values
