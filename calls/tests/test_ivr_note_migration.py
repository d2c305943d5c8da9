"""calls 0014: IVR-failure tickets opened before the failure's explanation was a system
entry get it as one, and only those whose message is exactly the generator's text."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps as django_apps

from calls.models import Call, Escalation
from calls.selectors import call_url
from tickets.context.models import Interaction
from tickets.models import Channel, Customer, Message, Ticket
from tickets.selectors import message_opened_ticket, ticket_opened_by_system
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db

migration = importlib.import_module("calls.migrations.0014_ivr_failure_note_system_entry")

OLD_WORDING = "IVR failure ({kind}) on call {contact}.\n{reason}\nCaller: {phone}. Call page: {url}"
UNVERIFIED_WORDING = (
    "IVR failure ({kind}) on call {contact}.\n{reason}\nCaller: {phone} (caller ID, not "
    "verified: confirm who is calling before discussing the account). Call page: {url}"
)


def _old_ivr_ticket(
    customer: Customer, contact: str, *, wording: str = OLD_WORDING, body: str | None = None
) -> tuple[Ticket, Message]:
    """A ticket as ``escalation_create`` opened it before 5f0712f: the explanation as the
    caller's first message; its customer-context interaction scored from it."""
    call = Call.objects.create(contact_id=contact, customer=customer, customer_phone="+1555")
    reason = "3 failed attempts at Main>Billing"
    text = body or wording.format(
        kind="max_retries", contact=contact, reason=reason, phone="+1555", url=call_url(call)
    )
    ticket = ticket_create(
        customer=customer,
        subject=f"IVR failure: max retries ({contact})",
        body=text,
        channel=Channel.PHONE,
        tags=["ivr-failure", "max_retries"],
        origin_platform_id=contact,
    )
    Escalation.objects.create(call=call, kind="max_retries", reason=reason, ticket=ticket)
    message = ticket.messages.get()
    Interaction.objects.create(
        customer=customer,
        ticket=ticket,
        source_key=f"message:{message.pk}",
        channel=Channel.PHONE,
        kind="message",
        sentiment_score=-0.6,
        occurred_at=message.created_at,
    )
    return ticket, message


def test_old_ivr_notes_become_the_system_entry_the_ticket_was_opened_with(customer):
    old, old_note = _old_ivr_ticket(customer, "c-old")
    unverified, unverified_note = _old_ivr_ticket(customer, "c-new", wording=UNVERIFIED_WORDING)
    _, edited_note = _old_ivr_ticket(customer, "c-edit", body="Please call me back")
    plain = ticket_create(customer=customer, subject="Hello", body="IVR failure (x) on call y.")
    assert not ticket_opened_by_system(ticket=old)

    migration.convert(django_apps, None)
    migration.convert(django_apps, None)  # idempotent

    for ticket, note in ((old, old_note), (unverified, unverified_note)):
        note.refresh_from_db()
        assert (note.direction, note.kind, note.author_customer_id) == (
            "outbound",
            "system",
            None,
        )
        assert message_opened_ticket(message=note, ticket=ticket)
        assert ticket_opened_by_system(ticket=ticket)
        assert not Interaction.objects.filter(source_key=f"message:{note.pk}").exists()
    # not the generator's text, or no escalation's ticket: the customer's words stay
    edited_note.refresh_from_db()
    assert (edited_note.direction, edited_note.kind) == ("inbound", "public")
    assert Interaction.objects.filter(source_key=f"message:{edited_note.pk}").exists()
    assert plain.messages.get().direction == "inbound"
    assert not ticket_opened_by_system(ticket=plain)


@pytest.mark.parametrize(
    ("body", "matches"),
    [
        ("IVR failure (k) on call C.\nR\nCaller: +1. Call page: https://x/calls/h/", True),
        ("IVR failure (k) on call C.\nR\nCaller: +1. Call page: https://x/calls/h/ thanks", False),
        ("IVR failure (k) on call C.\nR\nCaller: +2. Call page: https://x/calls/h/", False),
        ("IVR failure (k) on call C.\nR2\nCaller: +1. Call page: https://x/calls/h/", False),
        ("IVR failure (k) on call C.\nR\nCaller: +1.", False),
    ],
)
def test_only_the_generators_exact_text_matches(body: str, matches: bool) -> Any:
    assert (
        migration.note_text_matches(body, kind="k", contact_id="C", reason="R", phone="+1")
        is matches
    )
