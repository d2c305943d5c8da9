"""Opening a ticket on a signed-in person's behalf: the API's ``POST /api/tickets``, the
seed contracts' creates and the workbench's "New ticket" page, one set of rules."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from django.db import transaction

from support.errors import InvalidInput
from support.services import audit_log_record
from tickets import selectors
from tickets.models import Customer, Team, Ticket
from tickets.services.customers import (
    customer_get_or_create,
    customer_get_or_create_by_external_id,
)
from tickets.services.lifecycle import TicketAlreadySubmitted, tag_names_normalise, ticket_create


def team_or_error(team_id: int | None) -> Team | None:
    """The team of this id, None for None; InvalidInput naming ``team_id`` otherwise."""
    if team_id is None:
        return None
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise InvalidInput(f"team_id: no team {team_id}.", details={"team_id": ["Unknown team."]})
    return team


def ticket_open(
    *,
    actor: Any,
    data: dict[str, Any],
    callers_own_id: bool = False,
    message_metadata: dict[str, Any] | None = None,
) -> Ticket:
    """Open a ticket from validated ``TicketCreateInputSerializer`` data on behalf of
    ``actor`` (the signed-in caller): the customer rule (an unseen ``customer_id``, this
    platform's or the caller's own, answers like an unknown one; an unknown own id
    creates the customer in the ticket's transaction; an unseen customer named by
    address is audited), then
    :func:`ticket_create`. The API's create, the seed contracts' (``seed_api``) and the
    workbench's "New ticket" page.

    ``callers_own_id``: ``origin_platform_id`` is the caller's own ticket id, one ticket
    per caller and id: a repeat raises ``TicketAlreadySubmitted`` naming the
    first (checked first, and enforced by the database against concurrent repeats).

    ``message_metadata``: kept on the first message (seed 004's ``timestamp`` as
    ``sent_at``, where channel intake keeps when the customer sent a message)."""
    external_id = data.get("origin_platform_id", "")
    origin_caller = actor if callers_own_id and external_id else None
    if origin_caller is not None:
        existing = selectors.ticket_submitted_get(caller=origin_caller, external_id=external_id)
        if existing is not None:
            raise TicketAlreadySubmitted(existing)
    # checked before the customer is created: a 400 must leave nothing behind
    team = team_or_error(data.get("team_id"))
    tags = tag_names_normalise(data.get("tags", []))  # a tag too long, named
    # The caller's own customer id: a customer created for it is created with the ticket,
    # all or nothing (a refused ticket leaves no customer behind).
    external_customer = data.get("customer_external_id", "")
    with transaction.atomic() if external_customer else nullcontext():
        customer, unseen_customer = _customer_for(actor, data)
        ticket = ticket_create(
            customer=customer,
            subject=data["subject"],
            body=data.get("description", ""),
            channel=data["channel"],
            priority=data["priority"],
            team=team,
            tags=tags,
            origin_platform_id=external_id,
            created_by=actor,
            origin_caller=origin_caller,
            message_metadata=message_metadata,
        )
    if unseen_customer:
        audit_log_record(
            actor=actor,
            action="ticket.create_for_unseen_customer",
            object_type="ticket",
            object_id=ticket.pk,
            details={"customer_id": customer.pk, "number": ticket.number},
        )
    return ticket


def _unknown_customer(customer_id: int | str) -> InvalidInput:
    return InvalidInput(
        f"customer_id: no customer {customer_id}.",
        details={"customer_id": ["Unknown customer."]},
    )


def _customer_for(actor: Any, data: dict[str, Any]) -> tuple[Customer, bool]:
    """The new ticket's customer from validated create data, and whether the caller could
    not see it before (to be audited). By ``customer_id`` (this platform's id) or
    ``customer_external_id`` (the caller's own, found or created): a customer the caller
    may not see answers exactly like an unknown id, whichever way it is named (by its own
    id, a customer of a ticket the caller submitted itself may be named again:
    ``selectors.customer_submitted_by``)."""
    if data.get("customer_external_id"):
        customer, created = customer_get_or_create_by_external_id(
            external_id=data["customer_external_id"]
        )
        if created:
            return customer, False
        visible = selectors.customer_visible_to(actor, customer_id=customer.pk)
        if not visible and not selectors.customer_submitted_by(actor, customer_id=customer.pk):
            raise _unknown_customer(data["customer_external_id"])
        # named again, unseen, by the caller that submitted one of its tickets: audited
        # like a customer named by address
        return customer, not visible
    if data.get("customer_id"):
        found = (
            Customer.objects.filter(selectors.customer_visibility_q(actor))
            .filter(pk=data["customer_id"])
            .first()
        )
        if found is None:
            raise _unknown_customer(data["customer_id"])
        return found, False
    info = data["customer"]
    customer, created = customer_get_or_create(
        email=info["email"], name=info.get("name", ""), phone=info.get("phone", "")
    )
    # Naming an existing customer by address makes it visible to the creator (customers
    # follow their tickets): allowed, so agents can log a returning customer's call, but
    # audited when the creator could not see it before.
    unseen = not created and not selectors.customer_visible_to(actor, customer_id=customer.pk)
    return customer, unseen
