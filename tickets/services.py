"""Every write to tickets goes through these functions; each records its domain events
in the same transaction (see ``support.events``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.db import ids_reserve, rows_insert
from support.errors import Conflict, InvalidInput, InvalidTransition
from support.events import NewEvent, events_record, outbox_rows, relay_after_commit
from support.safe_urls import http_url
from support.services import audit_log_record
from tickets.models import (
    Attachment,
    CannedResponse,
    Channel,
    ChannelIdentity,
    Customer,
    DeliveryState,
    Direction,
    Message,
    MessageKind,
    Priority,
    Tag,
    Team,
    Ticket,
    TicketRead,
    TicketStatus,
)
from tickets.thread_rules import (
    TicketRowSearchVector,
    TicketSearchVector,
    customer_search_text,
    tickets_customer_message_apply,
)

PREVIEW_CHARS = 140


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str = ""
    content: bytes | None = None
    external_url: str = ""
    external_media_id: str = ""
    kind: str = "other"


# --- events ---------------------------------------------------------------


def ticket_event_payload(ticket: Ticket) -> dict[str, Any]:
    """Seed 001's ticket event fields."""
    return {
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "customer_id": ticket.customer_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "source": ticket.channel,
        "team_id": ticket.team_id,
        "assignee_id": ticket.assignee_id,
        "needs_review": ticket.needs_review,
        "is_bot_handoff": ticket.is_bot_handoff,
        "correlation_id": str(ticket.correlation_id),
    }


def ticket_new_event(event_type: str, ticket: Ticket, **extra: Any) -> NewEvent:
    return NewEvent(event_type, "ticket", ticket.pk, {**ticket_event_payload(ticket), **extra})


def message_new_event(event_type: str, message: Message, **extra: Any) -> NewEvent:
    return NewEvent(
        event_type,
        "message",
        message.pk,
        {
            "ticket_id": message.ticket_id,
            "message_id": message.pk,
            "direction": message.direction,
            "kind": message.kind,
            "channel": message.channel,
            "delivery_status": message.delivery_status,
            "preview": message.body_text[:PREVIEW_CHARS],
            **extra,
        },
    )


def _ticket_event(event_type: str, ticket: Ticket, **extra: Any) -> None:
    events_record([ticket_new_event(event_type, ticket, **extra)])


def _message_event(event_type: str, message: Message, **extra: Any) -> None:
    events_record([message_new_event(event_type, message, **extra)])


# --- customers --------------------------------------------------------------


def _customer_columns() -> tuple[list[str], str]:
    fields = Customer._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(f'"{f.column}"' for f in fields)


def customer_find_by_email(email: str) -> Customer | None:
    """Case-insensitive, through the ``lower(email)`` unique index (a plain cursor: this is
    on the path of every ticket created, and a raw queryset costs ~0.2 ms more)."""
    attnames, columns = _customer_columns()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM tickets_customer WHERE lower(email) = %s LIMIT 1",  # noqa: S608
            [email.strip().lower()],
        )
        row = cursor.fetchone()
    return Customer.from_db(connection.alias, attnames, row) if row else None


def customer_get_or_create(
    *,
    email: str = "",
    name: str = "",
    phone: str = "",
    defaults: dict[str, Any] | None = None,
) -> tuple[Customer, bool]:
    """Find a customer by email (case-insensitive), or create one. Safe under races."""
    email = email.strip()
    if email:
        existing = customer_find_by_email(email)
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                email=email, name=name.strip(), phone=phone.strip(), **(defaults or {})
            )
    except IntegrityError:
        existing = customer_find_by_email(email)
        if existing is None:
            raise
        return existing, False
    return customer, True


def channel_identity_link(
    *, customer: Customer, channel: str, external_id: str, display_name: str = ""
) -> ChannelIdentity:
    """Attach a channel identity to a customer (idempotent; never moves an existing one)."""
    identity, _ = ChannelIdentity.objects.get_or_create(
        channel=channel,
        external_id=external_id,
        defaults={"customer": customer, "display_name": display_name[:200]},
    )
    return identity


@transaction.atomic
def customer_merge(
    *, source: Customer, target: Customer, actor: Any = None, reason: str
) -> Customer:
    """Fold ``source`` into ``target``: every row pointing at the source customer
    (tickets, channel identities, message authorship, context rows of other apps such as
    orders, interactions or calls) is re-pointed at the target, each moved ticket gets a
    system entry and a ``ticket.updated`` event, the audit log gets a ``customer.merge``
    row, and the emptied source is deleted. Generic over ``Customer``'s reverse relations,
    so the core names no feature app. One-to-one rows (an erasure marker) stay with the
    source and keep it (it is then left in place, empty).
    """
    if source.pk == target.pk:
        return target
    locked = {
        c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
    }
    source, target = locked[source.pk], locked[target.pk]
    ticket_ids = list(
        Ticket.objects.filter(customer=source).order_by("pk").values_list("pk", flat=True)
    )
    moved: dict[str, int] = {}
    keeps_source = False
    for relation in Customer._meta.related_objects:
        model = relation.related_model
        assert not isinstance(model, str)  # resolved once the app registry is ready
        rows = model._default_manager.filter(**{relation.field.name: source})
        if relation.one_to_one:
            keeps_source |= rows.exists()
        elif relation.one_to_many:  # a ForeignKey to Customer on another model
            count = rows.update(**{relation.field.name: target})
            if count:
                moved[f"{model._meta.label_lower}.{relation.field.name}"] = count
    for ticket in Ticket.objects.filter(pk__in=ticket_ids).select_related("customer"):
        _system_note(
            ticket,
            actor,
            f"Customer record merged into {target} ({reason}).",
            {"customer_merged_from": source.pk, "customer_id": target.pk, "reason": reason},
        )
        _refresh_search_vector(ticket)
        _ticket_event("ticket.updated", ticket, changes={"customer_id": [source.pk, target.pk]})
    audit_log_record(
        actor=actor,
        action="customer.merge",
        object_type="customer",
        object_id=target.pk,
        details={
            "source_customer_id": source.pk,
            "target_customer_id": target.pk,
            "reason": reason,
            "tickets": ticket_ids,
            "moved": moved,
        },
    )
    if not keeps_source:
        source.delete()
    return target


@transaction.atomic
def customer_email_confirm(
    *, customer: Customer, email: str, actor: Any = None, reason: str
) -> Customer:
    """``customer`` proved it owns ``email`` (e.g. a one-time code sent there): it becomes
    that address's customer. When another customer already has the address, ``customer``
    is merged into it (:func:`customer_merge`) and that one is returned; otherwise the
    address is set on ``customer``. Either way the audit log gets a row. Only for proven
    addresses: an email someone merely typed must never reach this function."""
    email = email.strip()
    if not email:
        raise InvalidInput("An email address is required.", details={"email": ["Required."]})
    owner = customer_find_by_email(email)
    if owner is None:
        try:
            with transaction.atomic():
                Customer.objects.filter(pk=customer.pk).update(
                    email=email, updated_at=timezone.now()
                )
        except IntegrityError:  # someone took the address meanwhile: merge into them
            owner = customer_find_by_email(email)
            if owner is None:
                raise
        else:
            customer.email = email
            for ticket in Ticket.objects.filter(customer=customer).select_related("customer"):
                _refresh_search_vector(ticket)
            audit_log_record(
                actor=actor,
                action="customer.email_verified",
                object_type="customer",
                object_id=customer.pk,
                details={"reason": reason},
            )
            return customer
    if owner.pk == customer.pk:
        audit_log_record(
            actor=actor,
            action="customer.email_verified",
            object_type="customer",
            object_id=customer.pk,
            details={"reason": reason},
        )
        return customer
    return customer_merge(source=customer, target=owner, actor=actor, reason=reason)


@transaction.atomic
def channel_identity_move(
    *, identity: ChannelIdentity, customer: Customer, previous: Customer, actor: Any
) -> ChannelIdentity:
    """Re-attach a channel identity to another customer (a supervisor's correction in
    the admin): that person's future messages go to ``customer``. Audited."""
    ChannelIdentity.objects.filter(pk=identity.pk).update(customer=customer)
    identity.customer = customer
    audit_log_record(
        actor=actor,
        action="channel_identity.move",
        object_type="channel_identity",
        object_id=identity.pk,
        details={
            "channel": identity.channel,
            "from_customer_id": previous.pk,
            "to_customer_id": customer.pk,
        },
    )
    return identity


# --- tickets --------------------------------------------------------------------


def _tag_names(names: Iterable[str]) -> list[str]:
    """Normalised tag names (trimmed, lower case, at most 64 characters), each once."""
    return list(dict.fromkeys(n for n in (raw.strip().lower()[:64] for raw in names) if n))


def _tags_from_names(names: Iterable[str]) -> list[Tag]:
    return [Tag.objects.get_or_create(name=name)[0] for name in _tag_names(names)]


def _search_vector(subject: str, text: str = "", customer: Customer | None = None) -> Any:
    who = customer_search_text(customer) if customer is not None else ""
    return TicketSearchVector(subject, text, who)


def _refresh_search_vector(ticket: Ticket) -> None:
    Ticket.objects.filter(pk=ticket.pk).update(search_vector=_search_vector_for(ticket))


def ticket_build(
    *,
    pk: int,
    customer: Customer,
    subject: str,
    body: str,
    channel: str,
    channel_account_id: str = "",
    priority: str = Priority.NORMAL,
    team: Team | None = None,
    is_bot_handoff: bool = False,
    origin_platform_id: str = "",
    waiting: bool = True,
    now: Any,
) -> Ticket:
    """A new ticket, unsaved, as every creation writes it (``ticket_create`` and writers
    that batch rows, such as the channels' bulk drain)."""
    return Ticket(
        pk=pk,
        customer=customer,
        subject=subject[:255],
        channel=channel,
        channel_account_id=channel_account_id,
        priority=priority,
        team=team,
        is_bot_handoff=is_bot_handoff,
        origin_platform_id=origin_platform_id,
        last_message_at=now,
        waiting_since=now if waiting else None,
        search_vector=_search_vector(subject[:255], body, customer),
    )


def inbound_message_build(
    *,
    pk: int,
    ticket: Ticket,
    customer: Customer,
    body: str,
    channel: str,
    channel_message_id: str | None,
    metadata: dict[str, Any] | None,
    body_html: str = "",
) -> Message:
    """A customer's new message, unsaved (see :func:`ticket_build`)."""
    return Message(
        pk=pk,
        ticket=ticket,
        direction=Direction.INBOUND,
        kind=MessageKind.PUBLIC,
        author_customer=customer,
        body_text=body,
        body_html=body_html,
        channel=channel,
        channel_message_id=channel_message_id,
        delivery_status=DeliveryState.NONE,
        metadata=metadata or {},
    )


def ticket_create(
    *,
    customer: Customer,
    subject: str,
    body: str = "",
    body_html: str = "",
    channel: str = Channel.API,
    channel_account_id: str = "",
    priority: str = Priority.NORMAL,
    team: Team | None = None,
    tags: Sequence[str] = (),
    is_bot_handoff: bool = False,
    origin_platform_id: str = "",
    channel_message_id: str | None = None,
    message_metadata: dict[str, Any] | None = None,
    attachments: Sequence[NewAttachment] = (),
    created_by: Any = None,
) -> Ticket:
    """Open a ticket with the customer's first message as the start of its timeline.

    The hottest write of the product: the ticket, its first message and both events go to
    the database in one round trip after one for their ids (``support.db``), all or
    nothing. A duplicate ``channel_message_id`` (a redelivery) raises Conflict and leaves
    nothing behind. No ``post_save`` signals are sent for these rows.
    """
    subject = subject.strip()
    if not subject:
        raise InvalidInput("A ticket needs a subject.", details={"subject": ["Required."]})
    if priority not in Priority.values:
        raise InvalidInput(f"Unknown priority {priority!r}.", details={"priority": ["Invalid."]})
    now = timezone.now()
    has_message = bool(body.strip() or body_html.strip() or attachments)
    tag_names = _tag_names(tags)
    ids = ids_reserve(Ticket, Message) if has_message else ids_reserve(Ticket)
    ticket = ticket_build(
        pk=ids[0],
        customer=customer,
        subject=subject,
        body=body,
        channel=channel,
        channel_account_id=channel_account_id,
        priority=priority,
        team=team,
        is_bot_handoff=is_bot_handoff,
        origin_platform_id=origin_platform_id,
        waiting=has_message,
        now=now,
    )
    rows: list[Any] = [ticket]
    message: Message | None = None
    if has_message:
        message = inbound_message_build(
            pk=ids[1],
            ticket=ticket,
            customer=customer,
            body=body,
            body_html=body_html,
            channel=channel,
            channel_message_id=channel_message_id,
            metadata=message_metadata,
        )
        rows.append(message)
    events = [ticket_new_event("ticket.created", ticket, subject=ticket.subject, tags=tag_names)]
    if message is not None:
        events.append(message_new_event("message.created", message))
    rows += outbox_rows(events)
    # A single multi-statement write is a transaction of its own; a savepoint is needed
    # only inside a caller's transaction (so Conflict leaves it usable) or for the extra
    # statements of tags and attachments.
    needs_block = bool(tag_names or attachments) or connection.in_atomic_block
    try:
        with transaction.atomic() if needs_block else nullcontext():
            rows_insert(rows)
            if tag_names:
                ticket.tags.set(_tags_from_names(tag_names))
            if message is not None:
                for item in attachments:
                    _attachment_create(message, item)
    except IntegrityError as exc:
        if channel_message_id is not None and "message_channel_id_unique" in str(exc):
            raise Conflict(
                "This channel message was already recorded.",
                details={"channel_message_id": [str(channel_message_id)]},
            ) from exc
        raise
    relay_after_commit()
    return ticket


@transaction.atomic
def ticket_update(
    *,
    ticket: Ticket,
    actor: Any = None,
    status: str | None = None,
    priority: str | None = None,
    team: Team | object | None = ...,
    subject: str | None = None,
    tags: Sequence[str] | None = None,
    needs_review: bool | None = None,
    reason: str = "",
) -> Ticket:
    """Change a ticket's fields; status changes must follow the allowed transitions.

    Each change is written to the timeline as a system entry and published as
    ``ticket.updated`` with the changed fields.
    """
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    changes: dict[str, list[Any]] = {}
    now = timezone.now()
    fields: list[str] = []

    if status is not None and status != ticket.status:
        if status not in TicketStatus.values:
            raise InvalidInput(f"Unknown status {status!r}.", details={"status": ["Invalid."]})
        if not ticket.can_transition_to(status):
            raise InvalidTransition(
                f"A {ticket.status} ticket cannot become {status}.",
                details={
                    "status": [
                        f"Allowed from {ticket.status}: "
                        f"{', '.join(sorted(ticket_allowed_statuses(ticket))) or 'none'}."
                    ]
                },
            )
        changes["status"] = [ticket.status, status]
        ticket.status = status
        fields.append("status")
        if status == TicketStatus.RESOLVED:
            ticket.resolved_at = now
            fields.append("resolved_at")
        elif status == TicketStatus.CLOSED:
            ticket.closed_at = now
            fields.append("closed_at")
        elif status == TicketStatus.OPEN and changes["status"][0] == TicketStatus.RESOLVED:
            ticket.resolved_at = None
            fields.append("resolved_at")
    if priority is not None and priority != ticket.priority:
        if priority not in Priority.values:
            raise InvalidInput(
                f"Unknown priority {priority!r}.", details={"priority": ["Invalid."]}
            )
        changes["priority"] = [ticket.priority, priority]
        ticket.priority = priority
        fields.append("priority")
    if team is not ...:
        new_team = team if isinstance(team, Team) else None
        if new_team != ticket.team:
            changes["team"] = [
                ticket.team.name if ticket.team else None,
                new_team.name if new_team else None,
            ]
            ticket.team = new_team
            fields.append("team")
    if subject is not None and subject.strip() and subject.strip() != ticket.subject:
        changes["subject"] = [ticket.subject, subject.strip()[:255]]
        ticket.subject = subject.strip()[:255]
        fields.append("subject")
    if needs_review is not None and needs_review != ticket.needs_review:
        changes["needs_review"] = [ticket.needs_review, needs_review]
        ticket.needs_review = needs_review
        fields.append("needs_review")
    if tags is not None:
        old = sorted(ticket.tags.values_list("name", flat=True))
        tag_objs = _tags_from_names(tags)
        new = sorted(t.name for t in tag_objs)
        if old != new:
            ticket.tags.set(tag_objs)
            changes["tags"] = [old, new]

    if not changes:
        return ticket
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])
    if "subject" in changes:
        _refresh_search_vector(ticket)
    _system_note(ticket, actor, _describe_changes(changes, reason), {"changes": changes})
    _ticket_event("ticket.updated", ticket, changes=changes)
    return ticket


def ticket_allowed_statuses(ticket: Ticket) -> frozenset[str]:
    from tickets.models import ALLOWED_TRANSITIONS

    return ALLOWED_TRANSITIONS[ticket.status]


def _describe_changes(changes: dict[str, list[Any]], reason: str) -> str:
    parts = []
    for field, (old, new) in changes.items():
        label = field.replace("_", " ")
        parts.append(
            f"{label}: {old if old not in (None, '', []) else '—'} → "
            f"{new if new not in (None, '', []) else '—'}"
        )
    text = "; ".join(parts)
    return f"{text} ({reason})" if reason else text


def _system_note(ticket: Ticket, actor: Any, text: str, metadata: dict[str, Any]) -> Message:
    return Message.objects.create(
        ticket=ticket,
        direction=Direction.OUTBOUND,
        kind=MessageKind.SYSTEM,
        author_user=actor if getattr(actor, "is_authenticated", False) else None,
        body_text=text,
        channel=ticket.channel,
        metadata=metadata,
    )


@transaction.atomic
def ticket_assign(*, ticket: Ticket, assignee: Any, actor: Any = None) -> Ticket:
    """Assign to a user (or ``None`` to unassign); written to the timeline and published."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if assignee is not None and not assignee.is_active:
        raise InvalidInput("That user is inactive.", details={"assignee": ["Inactive user."]})
    if ticket.assignee_id == (assignee.pk if assignee else None):
        return ticket
    old = ticket.assignee.get_username() if ticket.assignee else None
    new = assignee.get_username() if assignee else None
    ticket.assignee = assignee
    ticket.save(update_fields=["assignee", "updated_at"])
    changes = {"assignee": [old, new]}
    _system_note(ticket, actor, _describe_changes(changes, ""), {"changes": changes})
    _ticket_event("ticket.updated", ticket, changes=changes)
    return ticket


@transaction.atomic
def message_add(
    *,
    ticket: Ticket,
    body: str = "",
    body_html: str = "",
    kind: str = MessageKind.PUBLIC,
    direction: str = Direction.OUTBOUND,
    author_user: Any = None,
    author_customer: Customer | None = None,
    channel: str | None = None,
    channel_message_id: str | None = None,
    delivery_status: str | None = None,
    metadata: dict[str, Any] | None = None,
    attachments: Sequence[NewAttachment] = (),
) -> Message:
    """Add to the timeline: a customer's message, an agent's public reply or an internal note.

    A public outbound reply is queued for delivery on the ticket's channel (the channel
    app listens to ``message.created``). Duplicate ``channel_message_id`` raises Conflict.
    """
    if kind not in MessageKind.values:
        raise InvalidInput(f"Unknown message kind {kind!r}.", details={"kind": ["Invalid."]})
    if kind != MessageKind.PUBLIC and direction == Direction.INBOUND:
        raise InvalidInput("Customer messages are always public.", details={"kind": ["Invalid."]})
    if not (body.strip() or body_html.strip() or attachments):
        raise InvalidInput(
            "A message needs a body or an attachment.", details={"body": ["Required."]}
        )
    if ticket.merged_into_id is not None:
        target = ticket.merged_into.number if ticket.merged_into else "another ticket"
        raise InvalidInput(
            f"{ticket.number} was merged into {target}.",
            details={"ticket": ["Merged."]},
        )
    now = timezone.now()
    if delivery_status is None:
        is_reply = direction == Direction.OUTBOUND and kind == MessageKind.PUBLIC
        delivery_status = DeliveryState.QUEUED if is_reply else DeliveryState.NONE
    try:
        # No inner savepoint: Conflict leaves this function's atomic block, which rolls
        # back to its own savepoint (or the whole transaction when it is the outermost).
        message = Message.objects.create(
            ticket=ticket,
            direction=direction,
            kind=kind,
            author_user=author_user if getattr(author_user, "is_authenticated", False) else None,
            author_customer=author_customer,
            body_text=body,
            body_html=body_html,
            channel=channel or ticket.channel,
            channel_message_id=channel_message_id,
            delivery_status=delivery_status,
            metadata=metadata or {},
        )
    except IntegrityError as exc:
        raise Conflict(
            "This channel message was already recorded.",
            details={"channel_message_id": [str(channel_message_id)]},
        ) from exc
    for item in attachments:
        _attachment_create(message, item)

    if direction == Direction.INBOUND:
        # the threading rules, shared with the channels' bulk drain (tickets.thread_rules)
        ((ticket, before),) = tickets_customer_message_apply(ticket_ids=[ticket.pk], now=now)
        if ticket.status != before:
            _ticket_event("ticket.updated", ticket, changes={"status": [before, ticket.status]})
        _message_event("message.created", message)
        return message
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    fields = ["last_message_at", "updated_at"]
    ticket.last_message_at = now
    if kind == MessageKind.PUBLIC and author_user is not None:
        ticket.waiting_since = None
        fields.append("waiting_since")
        if ticket.first_response_at is None:
            ticket.first_response_at = now
            fields.append("first_response_at")
        if ticket.status == TicketStatus.NEW:
            ticket.status = TicketStatus.OPEN
            fields.append("status")
            _ticket_event("ticket.updated", ticket, changes={"status": ["new", "open"]})
    if kind == MessageKind.PUBLIC:
        # one UPDATE: the search vector (with this message) goes with the other fields
        ticket.search_vector = _search_vector_for(ticket)
        fields.append("search_vector")
    ticket.save(update_fields=fields)
    _message_event("message.created", message)
    return message


@transaction.atomic
def attachment_content_store(
    *, attachment: Attachment, content: bytes, content_type: str = "", filename: str = ""
) -> Attachment:
    """Store a downloaded file for an attachment recorded by reference (idempotent)."""
    from django.core.files.base import ContentFile

    attachment = Attachment.objects.select_for_update().get(pk=attachment.pk)
    if attachment.file:
        return attachment
    if filename:
        attachment.filename = filename[:255]
    if content_type:
        attachment.content_type = content_type[:127]
    attachment.size = len(content)
    attachment.file.save(attachment.filename, ContentFile(content), save=False)
    attachment.save(update_fields=["file", "filename", "content_type", "size"])
    return attachment


def _attachment_create(message: Message, item: NewAttachment) -> Attachment:
    from django.core.files.base import ContentFile

    attachment = Attachment(
        message=message,
        filename=item.filename[:255] or "attachment",
        content_type=item.content_type,
        kind=item.kind,
        external_url=http_url(item.external_url),  # shown as a link: http(s) only
        external_media_id=item.external_media_id,
    )
    if item.content is not None:
        attachment.size = len(item.content)
        attachment.file.save(attachment.filename, ContentFile(item.content), save=False)
    attachment.save()
    return attachment


@transaction.atomic
def message_delivery_update(
    *,
    message: Message,
    status: str,
    at: Any = None,
    error: str = "",
    error_code: str = "",
    channel_message_id: str | None = None,
) -> bool:
    """Apply a delivery status; a late lower status never overwrites a higher one.

    Returns whether anything changed. ``failed`` always applies unless already read.
    """
    from tickets.models import DELIVERY_RANK

    message = Message.objects.select_for_update().get(pk=message.pk)
    at = at or timezone.now()
    fields: list[str] = []
    stamp_field = {
        "sent": "sent_at",
        "delivered": "delivered_at",
        "read": "read_at",
        "failed": "failed_at",
    }.get(status)
    if stamp_field and getattr(message, stamp_field) is None:
        setattr(message, stamp_field, at)
        fields.append(stamp_field)
    if channel_message_id and not message.channel_message_id:
        message.channel_message_id = channel_message_id
        fields.append("channel_message_id")
    current = message.delivery_status
    if status == DeliveryState.FAILED:
        if current != DeliveryState.READ:
            message.delivery_status = status
            message.delivery_error = error[:2000]
            message.delivery_error_code = error_code[:64]
            fields += ["delivery_status", "delivery_error", "delivery_error_code"]
    elif DELIVERY_RANK.get(status, 0) > DELIVERY_RANK.get(current, 0) or current == "failed":
        message.delivery_status = status
        fields.append("delivery_status")
    if not fields:
        return False
    message.save(update_fields=[*fields, "updated_at"])
    _message_event("message.delivery_updated", message, error=message.delivery_error)
    return True


# --- workbench ------------------------------------------------------------------


@transaction.atomic
def ticket_merge(
    *, source: Ticket, target: Ticket, actor: Any = None, confirm_customer_merge: bool = False
) -> Ticket:
    """Merge ``source`` into ``target``: its timeline (with attachments), tags and the
    customer's channel identities move to the target; the source is closed and points at
    the target so its number keeps working (the workbench redirects it).

    When the two tickets belong to different customers, moving the source customer's
    channel identities hands that person's future messages to the other customer: it
    needs a supervisor or ``confirm_customer_merge=True`` (else ``InvalidInput``), and is
    recorded in the audit log (``ticket.merge_customers``).
    """
    if source.pk == target.pk:
        raise InvalidInput("A ticket cannot be merged into itself.", details={"into": ["Same."]})
    # Lock both in id order so two opposite merges cannot deadlock.
    locked = {
        t.pk: t
        for t in Ticket.objects.select_for_update()
        .filter(pk__in=[source.pk, target.pk])
        .order_by("pk")
    }
    source, target = locked[source.pk], locked[target.pk]
    if source.merged_into_id is not None:
        raise Conflict(
            f"{source.number} was already merged.", details={"ticket": ["Already merged."]}
        )
    if target.merged_into_id is not None:
        raise InvalidInput(
            f"{target.number} was itself merged; merge into the ticket it points to.",
            details={"into": ["Merged ticket."]},
        )
    cross_customer = source.customer_id != target.customer_id
    by_supervisor = is_supervisor(actor)
    if cross_customer and not (confirm_customer_merge or by_supervisor):
        raise InvalidInput(
            f"{source.number} and {target.number} belong to different customers: merging "
            f"moves {source.number}'s customer's channel identities to the other customer. "
            "Confirm it explicitly (confirm_customer_merge) or ask a supervisor.",
            details={"confirm_customer_merge": ["Required to merge tickets of two customers."]},
        )
    moved = Message.objects.filter(ticket=source).update(ticket=target)
    moved_identities = 0
    if cross_customer:
        existing = set(
            ChannelIdentity.objects.filter(customer_id=target.customer_id).values_list(
                "channel", "external_id"
            )
        )
        for identity in ChannelIdentity.objects.filter(customer_id=source.customer_id):
            if (identity.channel, identity.external_id) not in existing:
                identity.customer_id = target.customer_id
                identity.save(update_fields=["customer"])
                moved_identities += 1
    source_tags = list(source.tags.all())
    if source_tags:
        target.tags.add(*source_tags)
    fields = ["updated_at"]
    if source.last_message_at and (
        target.last_message_at is None or source.last_message_at > target.last_message_at
    ):
        target.last_message_at = source.last_message_at
        fields.append("last_message_at")
    if source.waiting_since and (
        target.waiting_since is None or source.waiting_since < target.waiting_since
    ):
        target.waiting_since = source.waiting_since
        fields.append("waiting_since")
    target.save(update_fields=fields)
    old_status = source.status
    source.merged_into = target
    source.status = TicketStatus.CLOSED
    source.closed_at = timezone.now()
    source.waiting_since = None
    source.save(update_fields=["merged_into", "status", "closed_at", "waiting_since", "updated_at"])
    _system_note(
        source,
        actor,
        f"Merged into {target.number}.",
        {"merged_into": target.pk},
    )
    _system_note(
        target,
        actor,
        f"{source.number} merged into this ticket ({moved} timeline entries moved).",
        {"merged_from": source.pk, "moved_messages": moved, "moved_identities": moved_identities},
    )
    Ticket.objects.filter(pk=target.pk).update(search_vector=_search_vector_for(target))
    _ticket_event(
        "ticket.updated",
        source,
        changes={"status": [old_status, TicketStatus.CLOSED], "merged_into": [None, target.pk]},
    )
    _ticket_event("ticket.updated", target, changes={"merged_from": [None, source.pk]})
    if cross_customer:
        audit_log_record(
            actor=actor,
            action="ticket.merge_customers",
            object_type="ticket",
            object_id=target.pk,
            details={
                "source_ticket_id": source.pk,
                "target_ticket_id": target.pk,
                "source_customer_id": source.customer_id,
                "target_customer_id": target.customer_id,
                "moved_identities": moved_identities,
                "confirmed": bool(confirm_customer_merge),
                "by_supervisor": by_supervisor,
            },
        )
    return target


def _search_vector_for(ticket: Ticket) -> Any:
    """The ticket's vector recomputed from its row (see ``tickets.thread_rules``)."""
    return TicketRowSearchVector()


def ticket_mark_read(*, ticket: Ticket, user: Any) -> None:
    """Remember that ``user`` has seen the ticket as it is now (the inbox's unread marker)."""
    TicketRead.objects.update_or_create(
        user=user, ticket=ticket, defaults={"seen_at": timezone.now()}
    )


_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+(?:\.[a-z_]+)?)\s*}}")


def canned_response_render(*, canned: CannedResponse, ticket: Ticket, agent: Any) -> str:
    """Fill a canned response's placeholders for this ticket.

    Known: ``customer.name``, ``customer.first_name``, ``customer.email``,
    ``ticket.number``, ``ticket.subject``, ``agent.name``, ``agent.first_name``.
    Unknown placeholders are left as typed so the agent notices them.
    """
    customer = ticket.customer
    agent_name = (agent.get_full_name() or agent.get_username()) if agent else ""
    values = {
        "customer.name": customer.name or "there",
        "customer.first_name": (customer.name.split() or ["there"])[0],
        "customer.email": customer.email,
        "ticket.number": ticket.number,
        "ticket.subject": ticket.subject,
        "agent.name": agent_name,
        "agent.first_name": (getattr(agent, "first_name", "") or agent_name),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), canned.body)
