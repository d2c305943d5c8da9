"""Tickets: opening (one round trip), changing fields and status, assigning, the
system entries of the timeline, and marking read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from support.auth.roles import is_agent, is_supervisor
from support.db import ids_reserve, rows_insert
from support.errors import Conflict, InvalidInput, InvalidTransition
from support.events import event_time, events_record, outbox_rows, relay_after_commit
from support.parsing import safe_file_name
from support.safe_urls import http_url
from tickets.models import (
    MESSAGE_OPENED_TICKET_KEY,
    NOTHING_TO_FETCH,
    TAG_NAME_MAX_CHARS,
    Attachment,
    Channel,
    Customer,
    DeliveryState,
    Direction,
    DownloadStatus,
    Message,
    MessageKind,
    Priority,
    SlaTarget,
    Tag,
    Team,
    Ticket,
    TicketRead,
    TicketStatus,
)
from tickets.services.events import _ticket_event, message_new_event, ticket_new_event
from tickets.services.sla import (
    FIRST_RESPONSE_OPEN,
    sla_stopped_late,
    ticket_sla_recompute,
    ticket_sla_status_change,
)
from tickets.sla import ticket_due_times
from tickets.thread_rules import (
    TicketRowSearchVector,
    TicketSearchVector,
    customer_search_text,
)


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str = ""
    content: bytes | None = None
    external_url: str = ""
    external_media_id: str = ""
    kind: str = "other"


class TicketAlreadySubmitted(Conflict):
    """A caller's ticket id that already has a ticket (``ticket_create(origin_caller=)``)."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__(
            "This ticket id was already submitted.",
            details={"ticket_id": [ticket.origin_platform_id]},
        )
        self.ticket = ticket


# --- tickets --------------------------------------------------------------------


#: How much of a refused tag its refusal quotes (a pasted paragraph is not echoed whole).
_TAG_QUOTE_CHARS = 100


def tag_names_normalise(names: Iterable[str]) -> list[str]:
    """Tag names as stored: trimmed, lower case, each once, empty ones left out.

    The one check of every way tags come in (the API's create and update, the ticket
    page's controls, bulk tagging, tickets opened by the apps): a name longer than
    ``TAG_NAME_MAX_CHARS`` once trimmed and lower-cased raises InvalidInput naming it and
    the limit (it was cut to 64 characters without a word)."""
    normalised: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if len(name) > TAG_NAME_MAX_CHARS:
            shown = name if len(name) <= _TAG_QUOTE_CHARS else f"{name[:TAG_NAME_MAX_CHARS]}…"
            reason = (
                f"tags: {shown!r} is {len(name)} characters long; "
                f"a tag has at most {TAG_NAME_MAX_CHARS} characters."
            )
            raise InvalidInput(reason, details={"tags": [reason]})
        if name:
            normalised.append(name)
    return list(dict.fromkeys(normalised))


def _tags_from_names(names: Iterable[str]) -> list[Tag]:
    """The tags of names already normalised (:func:`tag_names_normalise`)."""
    return [Tag.objects.get_or_create(name=name)[0] for name in names]


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
    that batch rows, such as the channels' bulk drain). Its SLA due times come from the
    active policies, cached per process (``tickets.sla``): no query while cached."""
    due = ticket_due_times(
        priority=priority, team_id=team.pk if team else None, channel=channel, created_at=now
    )
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
        sla_policy_id=due.policy_id,
        first_response_due_at=due.first_response_due_at,
        resolution_due_at=due.resolution_due_at,
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
    origin_caller: Any = None,
    system_note: str = "",
) -> Ticket:
    """Open a ticket with the customer's first message as the start of its timeline.

    ``system_note``: why the ticket was opened when the customer wrote nothing (an IVR
    failure: ``calls.services.ivr``), a system entry of the timeline (outbound, no author),
    never a customer's message: the customer context does not score it and routing and
    knowledge suggestions do not read it as the customer's words. Such a ticket waits for
    an answer as one opened with a message does.

    The hottest write of the product: the ticket, its first message and both events go to
    the database in one round trip after one for their ids (``support.db``), all or
    nothing. A duplicate ``channel_message_id`` (a redelivery) raises Conflict and leaves
    nothing behind. No ``post_save`` signals are sent for these rows. The SLA due times
    come from the per-process policy cache (a read once a minute per process at most).

    ``created_by``: the signed-in user who opened it (the API's caller), kept on the
    ticket and shown on its page. ``origin_caller`` (a user) makes ``origin_platform_id``
    that caller's own ticket id,
    unique per caller: a second ticket with the same pair raises
    :class:`TicketAlreadySubmitted` (naming the first) and leaves nothing behind.
    """
    subject = subject.strip()
    if not subject:
        raise InvalidInput("A ticket needs a subject.", details={"subject": ["Required."]})
    if priority not in Priority.values:
        raise InvalidInput(f"Unknown priority {priority!r}.", details={"priority": ["Invalid."]})
    now = timezone.now()
    has_message = bool(body.strip() or body_html.strip() or attachments)
    has_note = bool(system_note.strip())
    tag_names = tag_names_normalise(tags)
    ids = ids_reserve(Ticket, *[Message] * (int(has_message) + int(has_note)))
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
        waiting=has_message or has_note,
        now=now,
    )
    if origin_caller is not None:
        ticket.origin_caller = origin_caller
    if created_by is not None and getattr(created_by, "is_authenticated", False):
        ticket.created_by = created_by  # who opened it (an API key's user, an agent)
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
    note: Message | None = None
    if has_note:
        note = Message(
            pk=ids[-1],
            ticket=ticket,
            direction=Direction.OUTBOUND,
            kind=MessageKind.SYSTEM,
            body_text=system_note,
            channel=channel,
            # the marker of a ticket the system opened (its subject is no customer's words)
            metadata={MESSAGE_OPENED_TICKET_KEY: True},
        )
        rows.append(note)
    events = [ticket_new_event("ticket.created", ticket, subject=ticket.subject, tags=tag_names)]
    for entry in (message, note):
        if entry is not None:
            events.append(message_new_event("message.created", entry, ticket=ticket))
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
        if origin_caller is not None and "ticket_origin_caller_unique" in str(exc):
            existing = Ticket.objects.filter(
                origin_caller=origin_caller, origin_platform_id=origin_platform_id
            ).first()
            if existing is not None:
                raise TicketAlreadySubmitted(existing) from exc
        raise
    relay_after_commit()
    return ticket


def _team_lock(team: Team) -> None:
    """Lock the row of the team a ticket moves to until the transaction ends, or refuse a
    team deleted meanwhile. A team with tickets is not deleted (``Ticket.team`` is
    ``PROTECT``); the admin locks the team before it looks for its tickets
    (``tickets.admin.TeamAdmin``), so a move and a deletion wait for each other and the
    second sees what the first did (the database's own check, at commit, was a 500)."""
    if not Team.objects.select_for_update().filter(pk=team.pk).exists():
        raise InvalidInput(f"team: no team {team.pk}.", details={"team": ["Unknown."]})


#: Why an agent may not take a ticket out of its team (``ticket_update(team=None)``).
NO_TEAM_REFUSAL = (
    "Only supervisors move a ticket to no team: a ticket with no team is visible to every "
    "agent. Choose a team instead."
)


def team_change_allowed(*, actor: Any, current_team_id: int | None, team_id: int | None) -> bool:
    """The team rule: anyone who may change a ticket moves it to any team (agents too, to
    a team they are not in: a transfer, after which they no longer see it unless it is
    theirs); only supervisors take a ticket out of its team ("No team"), since a ticket
    with no team is visible to every agent, and its customer with it. ``actor`` None is
    the system (routing, SLA escalations), which may. Apply it to the ticket's row as it
    will be written (locked), as :func:`ticket_update` does."""
    if team_id is not None or current_team_id is None or actor is None:
        return True
    return is_supervisor(actor)


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
    ``ticket.updated`` with the changed fields. A person's (``actor``) move to no team is
    refused unless they are a supervisor (:func:`team_change_allowed`, InvalidInput
    naming ``team``), whichever path it came by; ``actor`` None is the system.
    """
    tag_names = None if tags is None else tag_names_normalise(tags)  # refused before any write
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
        if not team_change_allowed(
            actor=actor,
            current_team_id=ticket.team_id,
            team_id=new_team.pk if new_team else None,
        ):
            raise InvalidInput(NO_TEAM_REFUSAL, details={"team": ["Supervisors only."]})
        if new_team is not None and new_team.pk != ticket.team_id:
            _team_lock(new_team)
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
    if tag_names is not None:
        old = sorted(ticket.tags.values_list("name", flat=True))
        tag_objs = _tags_from_names(tag_names)
        new = sorted(t.name for t in tag_objs)
        if old != new:
            ticket.tags.set(tag_objs)
            changes["tags"] = [old, new]

    if not changes:
        return ticket
    if "status" in changes:
        fields += ticket_sla_status_change(ticket, before=changes["status"][0], now=now)
    if ("priority" in changes or "team" in changes) and ticket.status in FIRST_RESPONSE_OPEN:
        # a resolved or closed ticket keeps the due times it was judged by: re-filing it
        # under another priority or team must not turn a met target into a breach
        fields += ticket_sla_recompute(ticket, now=now)
    if fields:
        ticket.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
    if "subject" in changes:
        _refresh_search_vector(ticket)
    _system_note(ticket, actor, _describe_changes(changes, reason), {"changes": changes})
    events = [ticket_new_event("ticket.updated", ticket, changes=changes)]
    if changes.get("status", [None, None])[1] == TicketStatus.RESOLVED:
        # Its own event type, so subscribers (webhooks, EventBridge) need not read changes.
        events.append(ticket_new_event("ticket.resolved", ticket, resolved_at=event_time(now)))
    events_record(events)
    if "resolved_at" in fields and ticket.resolved_at is not None:
        sla_stopped_late(ticket, target=SlaTarget.RESOLUTION, stopped_at=now)
    elif "closed_at" in fields:
        # Closed: the clocks still running stop for good (the attainment judges the ticket
        # at its end, COALESCE(resolved_at, closed_at): tickets.selectors.sla_attainment).
        # A breach the checker had not seen yet is recorded now, as at a late resolution:
        # closing an overdue ticket between two checker runs left no breach behind.
        if ticket.first_response_at is None:
            sla_stopped_late(
                ticket,
                target=SlaTarget.FIRST_RESPONSE,
                stopped_at=ticket.resolved_at or now,
                how="closed",
            )
        if ticket.resolved_at is None:
            sla_stopped_late(ticket, target=SlaTarget.RESOLUTION, stopped_at=now, how="closed")
    return ticket


def ticket_allowed_statuses(ticket: Ticket) -> frozenset[str]:
    from tickets.models import ALLOWED_TRANSITIONS

    return ALLOWED_TRANSITIONS[ticket.status]


#: Stored values shown by their labels on the timeline ("Status: Open → Resolved", not
#: "status: open → resolved"); the entry's metadata and the ``ticket.updated`` event keep
#: the values themselves.
_CHANGE_CHOICES: dict[str, dict[str, str]] = {
    "status": dict(TicketStatus.choices),
    "priority": dict(Priority.choices),
}


def _change_value(field: str, value: Any) -> str:
    """One side of a change as people read it: a choice's label, yes / no, a list
    comma-separated (a Python list's repr before), "—" for nothing."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return _CHANGE_CHOICES.get(field, {}).get(value, str(value))


def _describe_changes(changes: dict[str, list[Any]], reason: str) -> str:
    """The timeline's text for a change: "Status: Open → Resolved; Priority: Normal →
    High" (and the reason in brackets)."""
    parts = [
        f"{field.replace('_', ' ').capitalize()}: "
        f"{_change_value(field, old)} → {_change_value(field, new)}"
        for field, (old, new) in changes.items()
    ]
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


def assignee_refusal(user: Any) -> str | None:
    """Why ``user`` may not be given tickets, or None: only active agents and supervisors
    (anyone else cannot open the workbench to work on them)."""
    if not user.is_active:
        return "That user is inactive."
    if not is_agent(user):
        return f"{user.get_username()} is not an agent or supervisor."
    return None


def assignment_allowed(
    *, actor: Any, current_assignee_id: int | None, assignee_id: int | None
) -> bool:
    """The assignment rule: supervisors give a ticket to anyone; agents may take a ticket
    (give it to themselves) and release their own, not give one to someone else or release
    someone else's. Apply it to the ticket's row as it will be written (locked:
    ``selectors.ticket_get(..., for_update=True)``, ``selectors.ticket_list_locked``), not
    as first read, or a ticket given to someone else in between is overwritten."""
    if assignee_id == current_assignee_id or is_supervisor(actor):
        return True
    assigning_other = assignee_id is not None and assignee_id != actor.pk
    unassigning_other = assignee_id is None and current_assignee_id not in (None, actor.pk)
    return not (assigning_other or unassigning_other)


@transaction.atomic
def ticket_assign(*, ticket: Ticket, assignee: Any, actor: Any = None) -> Ticket:
    """Assign to an agent or supervisor (or ``None`` to unassign); written to the timeline
    and published. Who may give the ticket to whom is :func:`assignment_allowed`, which
    the caller checks (on the row it locked)."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    refusal = assignee_refusal(assignee) if assignee is not None else None
    if refusal is not None:
        raise InvalidInput(f"assignee: {refusal}", details={"assignee": [refusal]})
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


def _attachment_create(message: Message, item: NewAttachment) -> Attachment:
    from django.core.files.base import ContentFile

    attachment = Attachment(
        message=message,
        filename=safe_file_name(item.filename),  # the sender's: "../x", "..", NUL, …
        content_type=item.content_type[:127],
        kind=item.kind,
        external_url=http_url(item.external_url),  # shown as a link: http(s) only
        external_media_id=item.external_media_id[:255],
    )
    if item.content is not None:
        attachment.size = len(item.content)
        attachment.file.save(attachment.filename, ContentFile(item.content), save=False)
    elif attachment.external_media_id or attachment.external_url:
        attachment.download_status = DownloadStatus.PENDING  # fetched after commit
    else:
        attachment.download_status = DownloadStatus.FAILED
        attachment.download_error = NOTHING_TO_FETCH
    attachment.save()
    return attachment


def _search_vector_for(ticket: Ticket) -> Any:
    """The ticket's vector recomputed from its row (see ``tickets.thread_rules``)."""
    return TicketRowSearchVector()


def ticket_mark_read(*, ticket: Ticket, user: Any) -> None:
    """Remember that ``user`` has seen the ticket as it is now (the inbox's unread marker)."""
    TicketRead.objects.update_or_create(
        user=user, ticket=ticket, defaults={"seen_at": timezone.now()}
    )
