"""Data protection: export everything about a customer, and erase a customer.

Erase keeps the customer row, tickets, orders, ratings, interaction kinds, dates and
scores (the aggregates reports rely on) and removes what identifies the person:
profile fields and channel identities are removed, the customer's own messages are
replaced by ``[erased]``, their attachments deleted, and every other place the person's
name, email, phone or channel ids appear (agent replies, subjects, event payloads, the
audit and admin logs, interaction summaries, CSAT comments) is redacted. Other apps
that keep personal data register an :func:`register_erasure_hook`. Both operations
write an audit-log entry (who, when, what was counted; never the personal data).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.search import SearchVector
from django.db import transaction
from django.db.models import Q, Value
from django.utils import timezone

from support.models import AuditLog, OutboxEvent
from support.services import audit_log_record
from tickets.context.cache import context_invalidate
from tickets.context.interactions import get_backend
from tickets.context.models import CsatFeedback, CustomerErasure, Order
from tickets.models import (
    Attachment,
    ChannelIdentity,
    Customer,
    Direction,
    Message,
    Ticket,
)

logger = logging.getLogger(__name__)

ERASED = "[erased]"
REDACTED = "[redacted]"
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ErasureSubject:
    customer_id: int
    ticket_ids: list[int]
    tokens: list[str]

    def redact(self, text: str) -> str:
        return redact(text, self.tokens)


ErasureHook = Callable[[ErasureSubject], int]
ExportHook = Callable[[Customer], dict[str, Any]]
_erasure_hooks: dict[str, ErasureHook] = {}
_export_hooks: dict[str, ExportHook] = {}


def register_erasure_hook(name: str, hook: ErasureHook) -> None:
    """Another app's eraser: gets the subject, returns how many rows it changed."""
    _erasure_hooks[name] = hook


def register_export_hook(name: str, hook: ExportHook) -> None:
    """Another app's exporter: returns JSON-ready data put under ``name`` in the export."""
    _export_hooks[name] = hook


def customer_redaction_names(customer_id: int | None) -> tuple[str, ...]:
    """The names text about this customer may hold (their name, their channel display
    names), for ``support.redaction.redact(names=...)`` before text goes to a provider."""
    if customer_id is None:
        return ()
    names = [
        *Customer.objects.filter(pk=customer_id).values_list("name", flat=True),
        *ChannelIdentity.objects.filter(customer_id=customer_id)
        .exclude(display_name="")
        .values_list("display_name", flat=True),
    ]
    return tuple(dict.fromkeys(n for n in names if n))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


# --- export ---------------------------------------------------------------------------


def customer_export_build(customer: Customer) -> dict[str, Any]:
    tickets = []
    for ticket in Ticket.objects.filter(customer=customer).prefetch_related("tags").order_by("id"):
        messages = [
            {
                "id": m.pk,
                "direction": m.direction,
                "kind": m.kind,
                "channel": m.channel,
                "body_text": m.body_text,
                "body_html": m.body_html,
                "created_at": _iso(m.created_at),
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                    for a in m.attachments.all()
                ],
            }
            for m in ticket.messages.filter(kind="public")
            .prefetch_related("attachments")
            .order_by("created_at", "id")
        ]
        tickets.append(
            {
                "id": ticket.pk,
                "number": ticket.number,
                "subject": ticket.subject,
                "status": ticket.status,
                "channel": ticket.channel,
                "tags": sorted(t.name for t in ticket.tags.all()),
                "created_at": _iso(ticket.created_at),
                "resolved_at": _iso(ticket.resolved_at),
                "messages": messages,
            }
        )
    data: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "customer": {
            "id": customer.pk,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "vip_tier": customer.vip_tier,
            "account_type": customer.account_type,
            "created_at": _iso(customer.created_at),
            "updated_at": _iso(customer.updated_at),
            "erased": CustomerErasure.objects.filter(customer=customer).exists(),
        },
        "identities": [
            {
                "channel": i.channel,
                "external_id": i.external_id,
                "display_name": i.display_name,
                "created_at": _iso(i.created_at),
            }
            for i in ChannelIdentity.objects.filter(customer=customer).order_by("id")
        ],
        "orders": [
            {
                "number": o.number,
                "status": o.status,
                "currency": o.currency,
                "total": f"{o.total:.2f}",
                "refunded_amount": f"{o.refunded_amount:.2f}",
                "items": o.items,
                "placed_at": _iso(o.placed_at),
            }
            for o in Order.objects.filter(customer=customer).order_by("placed_at", "id")
        ],
        "tickets": tickets,
        "csat_feedback": [
            {
                "ticket_id": f.ticket_id,
                "rating": f.rating,
                "comment": f.comment,
                "created_at": _iso(f.created_at),
                "updated_at": _iso(f.updated_at),
            }
            for f in CsatFeedback.objects.filter(customer=customer).order_by("id")
        ],
        "interactions": [item.as_dict() for item in get_backend().for_customer(customer.pk)],
    }
    for name, hook in sorted(_export_hooks.items()):
        data[name] = hook(customer)
    return data


def customer_export(*, customer: Customer, actor: Any, via: str) -> dict[str, Any]:
    """Everything about the customer as JSON-ready data; audit-logged."""
    data = customer_export_build(customer)
    audit_log_record(
        actor=actor,
        action="customer.export",
        object_type="customer",
        object_id=customer.pk,
        details={
            "via": via,
            "tickets": len(data["tickets"]),
            "orders": len(data["orders"]),
            "interactions": len(data["interactions"]),
        },
    )
    return data


# --- erase ----------------------------------------------------------------------------


def _tokens(customer: Customer, identities: list[ChannelIdentity]) -> list[str]:
    raw = {customer.name, customer.email, customer.phone}
    # Phone numbers are often written without the leading + or spaces.
    if customer.phone:
        digits = re.sub(r"\D", "", customer.phone)
        raw.add(digits)
    for identity in identities:
        raw.add(identity.external_id)
        raw.add(identity.display_name)
    # Names also appear in part ("Hi Ada"): each name word of 3+ letters.
    for name in (customer.name, *(i.display_name for i in identities)):
        raw.update(part for part in re.split(r"\s+", name) if len(part) >= 3)
    tokens = sorted({t.strip() for t in raw if t and len(t.strip()) >= 3}, key=len, reverse=True)
    return tokens


def redact(text: str, tokens: list[str]) -> str:
    if not text or not tokens:
        return text
    pattern = "|".join(re.escape(t) for t in tokens)
    return re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)


def redact_json(value: Any, tokens: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, tokens)
    if isinstance(value, list):
        return [redact_json(v, tokens) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v, tokens) for k, v in value.items()}
    return value


def _text_match(field: str, tokens: list[str]) -> Q:
    if not tokens:
        return Q(pk__in=[])  # matches nothing
    q = Q()
    for token in tokens:
        q |= Q(**{f"{field}__icontains": token})
    return q


@transaction.atomic
def customer_erase(*, customer: Customer, actor: Any, via: str) -> dict[str, int]:
    """Erase the customer's personal data (see the module docstring). Idempotent."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    identities = list(ChannelIdentity.objects.filter(customer=customer))
    tokens = _tokens(customer, identities)
    ticket_ids = list(Ticket.objects.filter(customer=customer).values_list("id", flat=True))
    subject = ErasureSubject(customer_id=customer.pk, ticket_ids=ticket_ids, tokens=tokens)
    counts: dict[str, int] = {}

    # The customer's own words: replaced entirely; attachments deleted.
    own = Message.objects.filter(
        Q(author_customer=customer) | Q(ticket_id__in=ticket_ids, direction=Direction.INBOUND)
    )
    own_ids = list(own.values_list("id", flat=True))
    attachments = list(Attachment.objects.filter(message_id__in=own_ids))
    for attachment in attachments:
        if attachment.file:
            attachment.file.delete(save=False)
    Attachment.objects.filter(pk__in=[a.pk for a in attachments]).delete()
    counts["attachments_deleted"] = len(attachments)
    counts["messages_anonymised"] = Message.objects.filter(pk__in=own_ids).update(
        body_text=ERASED, body_html="", metadata={}
    )
    # Everything else on their tickets (agent replies, notes, system entries): redacted.
    others = Message.objects.filter(ticket_id__in=ticket_ids).exclude(pk__in=own_ids)
    changed = []
    for message in others.filter(
        _text_match("body_text", tokens)
        | _text_match("body_html", tokens)
        | _text_match("metadata", tokens)
        | _text_match("channel_message_id", tokens)
    ):
        message.body_text = redact(message.body_text, tokens)
        message.body_html = redact(message.body_html, tokens)
        message.metadata = redact_json(message.metadata, tokens)
        if message.channel_message_id:
            message.channel_message_id = redact(message.channel_message_id, tokens)
        changed.append(message)
    Message.objects.bulk_update(
        changed, ["body_text", "body_html", "metadata", "channel_message_id"]
    )
    Message.objects.filter(pk__in=own_ids, channel_message_id__isnull=False).filter(
        _text_match("channel_message_id", tokens)
    ).update(channel_message_id=None)
    counts["messages_redacted"] = len(changed)

    tickets = list(Ticket.objects.filter(pk__in=ticket_ids))
    for ticket in tickets:
        ticket.subject = redact(ticket.subject, tokens)
        ticket.origin_platform_id = redact(ticket.origin_platform_id, tokens)
    Ticket.objects.bulk_update(tickets, ["subject", "origin_platform_id"])
    for ticket in tickets:
        Ticket.objects.filter(pk=ticket.pk).update(
            search_vector=SearchVector(Value(ticket.subject), weight="A", config="english")
        )
    counts["tickets"] = len(tickets)

    counts["identities_deleted"] = ChannelIdentity.objects.filter(customer=customer).delete()[0]
    counts["csat_comments_erased"] = (
        CsatFeedback.objects.filter(customer=customer).exclude(comment="").update(comment="")
    )
    counts["interactions_erased"] = get_backend().erase_customer(customer.pk)
    counts["events_redacted"] = _redact_events(subject, own_ids)
    counts["log_entries_redacted"] = _redact_logs(subject, identities)
    for name, hook in sorted(_erasure_hooks.items()):
        counts[f"hook_{name}"] = hook(subject)

    customer.name = ""
    customer.email = ""
    customer.phone = ""
    customer.save(update_fields=["name", "email", "phone", "updated_at"])
    # The first erasure's record stays; a repeated one is still audit-logged.
    CustomerErasure.objects.get_or_create(
        customer=customer,
        defaults={
            "erased_by": actor if getattr(actor, "is_authenticated", False) else None,
            "counts": counts,
        },
    )
    audit_log_record(
        actor=actor,
        action="customer.erase",
        object_type="customer",
        object_id=customer.pk,
        details={"via": via, **counts},
    )
    context_invalidate(customer.pk)
    logger.info("Customer %s erased: %s", customer.pk, counts)
    return counts


def _redact_events(subject: ErasureSubject, own_message_ids: list[int]) -> int:
    events = OutboxEvent.objects.filter(
        Q(payload__customer_id=subject.customer_id)
        | Q(payload__ticket_id__in=subject.ticket_ids)
        | _text_match("payload", subject.tokens)
    )
    own = {str(pk) for pk in own_message_ids}
    changed = []
    for event in events:
        payload = redact_json(event.payload, subject.tokens)
        if event.aggregate_type == "message" and event.aggregate_id in own and "preview" in payload:
            payload["preview"] = ERASED
        if payload != event.payload:
            event.payload = payload
            changed.append(event)
    OutboxEvent.objects.bulk_update(changed, ["payload"])
    return len(changed)


def _redact_logs(subject: ErasureSubject, identities: list[ChannelIdentity]) -> int:
    changed = 0
    for entry in AuditLog.objects.filter(_text_match("details", subject.tokens)):
        entry.details = redact_json(entry.details, subject.tokens)
        entry.save(update_fields=["details"])
        changed += 1
    customer_type = ContentType.objects.get_for_model(Customer)
    identity_type = ContentType.objects.get_for_model(ChannelIdentity)
    entries = LogEntry.objects.filter(
        Q(content_type=customer_type, object_id=str(subject.customer_id))
        | Q(content_type=identity_type, object_id__in=[str(i.pk) for i in identities])
        | _text_match("object_repr", subject.tokens)
        | _text_match("change_message", subject.tokens)
    )
    for log in entries:
        log.object_repr = ERASED
        log.change_message = redact(log.change_message, subject.tokens)
        log.save(update_fields=["object_repr", "change_message"])
        changed += 1
    return changed
