"""support.db: several new rows in one round trip, all or nothing."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from support.db import ids_reserve, rows_insert
from support.events import NewEvent, outbox_rows
from support.models import OutboxEvent
from tickets.models import Customer, Message, Ticket
from tickets.services import TicketSearchVector


def _ticket(pk: int, customer: Customer, subject: str = "Parcel lost") -> Ticket:
    return Ticket(
        pk=pk,
        customer=customer,
        subject=subject,
        search_vector=TicketSearchVector(subject, "where is my parcel", "Ada"),
    )


@pytest.mark.django_db(transaction=True)
def test_rows_of_several_models_in_one_round_trip_with_reserved_ids() -> None:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    ticket_id, message_id = ids_reserve(Ticket, Message)
    ticket = _ticket(ticket_id, customer)
    message = Message(pk=message_id, ticket=ticket, direction="inbound", body_text="hello")
    events = outbox_rows([NewEvent("ticket.created", "ticket", ticket_id, {"n": 1})] * 2)
    with CaptureQueriesContext(connection) as queries:
        rows_insert([ticket, message, *events])
    assert len(queries) == 1
    stored = Ticket.objects.get(pk=ticket_id)
    assert stored.subject == "Parcel lost"
    assert stored.created_at is not None
    assert stored.correlation_id == ticket.correlation_id
    assert Ticket.objects.filter(search_vector="parcel").get().pk == ticket_id  # expression
    assert Message.objects.get(pk=message_id).ticket_id == ticket_id
    assert OutboxEvent.objects.count() == 2  # ids from the column default
    assert not ticket._state.adding
    assert ticket.created_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_failing_row_leaves_nothing_of_the_batch_outside_a_transaction() -> None:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    ids = ids_reserve(Ticket, Message, Message)
    ticket = _ticket(ids[0], customer)
    first = Message(
        pk=ids[1], ticket=ticket, direction="inbound", channel="whatsapp", channel_message_id="w1"
    )
    again = Message(
        pk=ids[2], ticket=ticket, direction="inbound", channel="whatsapp", channel_message_id="w1"
    )
    with pytest.raises(IntegrityError, match="message_channel_id_unique"):
        rows_insert([ticket, first, *outbox_rows([NewEvent("x", "ticket", 1, {})]), again])
    assert (Ticket.objects.count(), Message.objects.count(), OutboxEvent.objects.count()) == (
        0,
        0,
        0,
    )


@pytest.mark.django_db
def test_inside_an_atomic_block_the_rows_join_the_callers_transaction() -> None:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    [ticket_id] = ids_reserve(Ticket)
    with pytest.raises(RuntimeError), transaction.atomic():
        rows_insert([_ticket(ticket_id, customer)])
        assert Ticket.objects.filter(pk=ticket_id).exists()
        raise RuntimeError("roll back")
    assert not Ticket.objects.filter(pk=ticket_id).exists()
