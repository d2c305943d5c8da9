"""Merging one ticket into another (the workbench)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, Func, JSONField, Value
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.errors import Conflict, Forbidden, InvalidInput
from support.services import audit_log_record
from tickets.models import (
    MESSAGE_WRITTEN_ON_KEY,
    ChannelIdentity,
    Message,
    Ticket,
    TicketStatus,
)
from tickets.selectors import customers_fully_visible_to
from tickets.services.events import _ticket_event
from tickets.services.lifecycle import (
    NO_TEAM_REFUSAL,
    _search_vector_for,
    _system_note,
    team_change_allowed,
)

# --- workbench ------------------------------------------------------------------


def _first_response_carry(source: Ticket, target: Ticket) -> tuple[str | None, str] | None:
    """The source's agent replies move to the target's timeline, so the target was
    answered when the earlier of the two was (docs/sla.md): a target whose only reply came
    from the source no longer counts as unanswered (the SLA checker, the workbench badge
    and the alerts read ``first_response_at``; the due times, from creation, priority,
    team and channel, do not change). Never before the target existed: a reply on the
    duplicate before the target was opened answered it at once. Changes ``target``;
    returns (before, after) as ISO text when it changed."""
    if source.first_response_at is None:
        return None
    answered = max(source.first_response_at, target.created_at)
    before = target.first_response_at
    if before is not None and before <= answered:
        return None
    target.first_response_at = answered
    return (before.isoformat() if before else None, answered.isoformat())


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
    recorded in the audit log (``ticket.merge_customers``). An agent may merge two
    customers only when it sees every ticket of both (else ``Forbidden``): one visible
    ticket of a customer does not make the customer the agent's to hand over.

    The source's timeline joins the target's audience: merging a team's ticket into a
    ticket with no team shows it to every agent, as moving it to no team would, so it
    follows the team rule (:func:`team_change_allowed`: supervisors and the system only,
    else ``InvalidInput`` naming ``into`` with :data:`NO_TEAM_REFUSAL`).
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
    if not team_change_allowed(actor=actor, current_team_id=source.team_id, team_id=target.team_id):
        # Read on the locked rows: a team change of either ticket meanwhile is seen here.
        raise InvalidInput(
            f"{target.number} has no team, so merging {source.number} into it would move "
            f"its timeline into a ticket with no team. {NO_TEAM_REFUSAL}",
            details={"into": ["Supervisors only."]},
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
    if (
        cross_customer
        and actor is not None
        and not by_supervisor
        and not customers_fully_visible_to(
            actor, customer_ids=[source.customer_id, target.customer_id]
        )
    ):
        # Seeing one ticket of a customer is not seeing the customer: their identities (and
        # so their future messages) are not an agent's to move when some of their tickets
        # are in teams the agent is not in.
        raise Forbidden(
            f"{source.number} and {target.number} belong to different customers, and one of "
            "them has tickets in teams you are not in: ask a supervisor to merge them."
        )
    # Each moved entry keeps the ticket it was written on (the first, through later
    # merges: ``{key: source} || metadata`` lets a key already there win). What was meant
    # for that ticket's counterpart stays its own and nobody else's: a hand-off bot reads
    # the replies written on its ticket, and only those (docs/channels.md#chatbot-hand-off).
    moved = Message.objects.filter(ticket=source).update(
        ticket=target,
        metadata=Func(
            Value({MESSAGE_WRITTEN_ON_KEY: source.pk}, output_field=JSONField()),
            F("metadata"),
            template="(%(expressions)s)",
            arg_joiner=" || ",
            output_field=JSONField(),
        ),
    )
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
    carried = _first_response_carry(source, target)
    if carried:
        fields.append("first_response_at")
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
    changes: dict[str, Any] = {"merged_from": [None, source.pk]}
    if carried:
        changes["first_response_at"] = [carried[0], carried[1]]
    _ticket_event("ticket.updated", target, changes=changes)
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
