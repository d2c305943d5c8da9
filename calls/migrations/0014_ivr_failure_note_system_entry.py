"""IVR-failure tickets opened before 2026-12-06 (5f0712f) carry the failure's explanation
as an inbound public message of the caller; since then it is a system entry marked
``opened_ticket`` (``ticket_create(system_note=...)``). Those old messages become what a
new ticket has: a system entry (outbound, no author) with the marker, and the customer
context's interaction scored from them (the caller's "mood") is deleted from PostgreSQL
(``INTERACTIONS_BACKEND=postgres``, the default). With ``INTERACTIONS_BACKEND=dynamodb``
this migration does not reach the DynamoDB table (no AWS call from a migration): that item
stays, and counts in the customer context, until its ``expires_at``
(``INTERACTIONS_RETENTION_DAYS`` after it was recorded; DynamoDB's TTL then deletes it).

Only exact matches are converted: the ticket is an ``Escalation``'s (what
``calls.services.ivr.escalation_create`` opened), the message is its first customer
message, on the phone channel with no channel message id, and its text is, character for
character, what the generator wrote from that escalation's kind and reason and its call's
contact id and caller number, in either of its two wordings (before and after 12030d3,
"caller ID, not verified"), the call page's link aside (it follows ``SITE_URL``). A text
edited or redacted since (an erasure redacts the escalation's reason and the number),
a ticket already marked, or a caller's own words are left as they are. Irreversible in
meaning only: reversing it leaves the entries as system entries."""

from __future__ import annotations

import re
from typing import Any

from django.db import migrations

#: tickets.models.MESSAGE_OPENED_TICKET_KEY (written out: a migration keeps its history)
OPENED_TICKET_KEY = "opened_ticket"
UNVERIFIED = " (caller ID, not verified: confirm who is calling before discussing the account)"
LINK = re.compile(r"\. Call page: \S+")


def note_text_matches(body: str, *, kind: str, contact_id: str, reason: str, phone: str) -> bool:
    """Whether ``body`` is the IVR note generator's text for these values (either wording)."""
    head = f"IVR failure ({kind}) on call {contact_id}.\n{reason}\nCaller: {phone or 'unknown'}"
    if not body.startswith(head):
        return False
    rest = body[len(head) :]
    rest = rest.removeprefix(UNVERIFIED)
    return LINK.fullmatch(rest) is not None


def convert(apps: Any, schema_editor: Any) -> None:
    Escalation = apps.get_model("calls", "Escalation")
    Message = apps.get_model("tickets", "Message")
    Interaction = apps.get_model("tickets", "Interaction")
    escalations = (
        Escalation.objects.filter(ticket__isnull=False)
        .select_related("call", "ticket")
        .order_by("pk")
        .iterator(chunk_size=500)
    )
    for escalation in escalations:
        ticket = escalation.ticket
        messages = Message.objects.filter(ticket_id=ticket.pk)
        if messages.filter(kind="system", metadata__contains={OPENED_TICKET_KEY: True}).exists():
            continue  # opened the new way
        first = (
            messages.filter(direction="inbound", kind="public").order_by("created_at", "id").first()
        )
        if (
            first is None
            or first.channel != "phone"
            or first.channel_message_id is not None
            or first.author_customer_id not in (None, ticket.customer_id)
            or not note_text_matches(
                first.body_text,
                kind=escalation.kind,
                contact_id=escalation.call.contact_id,
                reason=escalation.reason,
                phone=escalation.call.customer_phone,
            )
        ):
            continue
        Message.objects.filter(pk=first.pk).update(
            direction="outbound",
            kind="system",
            author_customer=None,
            delivery_status="",
            metadata={**(first.metadata or {}), OPENED_TICKET_KEY: True},
        )
        Interaction.objects.filter(source_key=f"message:{first.pk}").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("calls", "0013_analytics_fallback_from"),
        ("tickets", "0013_reply_failed_attachment_failed_idx"),
    ]

    operations = [migrations.RunPython(convert, migrations.RunPython.noop, elidable=True)]
