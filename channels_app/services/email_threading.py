"""E-mail threading (issue #13): which customer and ticket an e-mail belongs to, under
``CHANNELS_EMAIL_AUTH_POLICY`` (see ``channels_app.services.email_auth``)."""

from __future__ import annotations

import logging

from channels_app import selectors
from channels_app.adapters.base import (
    InboundMessage,
)
from channels_app.services.email_auth import (
    EmailQuarantined,
    _email_policy,
    _email_sender_auth,
    email_customer_is_guest,
)
from channels_app.services.matching import _BatchCache, _customer_resolve
from tickets import services as ticket_services
from tickets.models import (
    ChannelIdentity,
    Customer,
    Ticket,
    TicketStatus,
)
from tickets.selectors import parse_ticket_ref

logger = logging.getLogger(__name__)


def _email_claimed_ticket(message: InboundMessage) -> tuple[Ticket | None, bool]:
    """The ticket the message says it belongs to, by In-Reply-To/References (Message-IDs we
    know), else by a ``[T-000123]`` token in the subject (merges followed); and whether
    only the token named it."""
    refs = tuple(
        dict.fromkeys(
            (*message.references, message.reply_to_external_id)
            if message.reply_to_external_id
            else message.references
        )
    )
    ticket = selectors.ticket_for_email_thread(references=refs)
    by_token = False
    if ticket is None:
        from channels_app.adapters.email.parsing import TICKET_TOKEN

        match = TICKET_TOKEN.search(message.subject)
        if match:
            ticket = Ticket.objects.filter(pk=parse_ticket_ref(match.group(1))).first()
            by_token = ticket is not None
    while ticket is not None and ticket.merged_into_id is not None:
        ticket = ticket.merged_into
    return ticket, by_token


def _email_thread(customer: Customer, message: InboundMessage) -> Ticket | None:
    """Policy ``off``: threading as before the sender checks (headers for anyone, the
    token only for the ticket's own customer)."""
    ticket, by_token = _email_claimed_ticket(message)
    if by_token and ticket is not None and ticket.customer_id != customer.pk:
        ticket = None  # a token alone never lets a stranger into a ticket
    if ticket is None or ticket.status == TicketStatus.CLOSED:
        return None
    return ticket


def _email_known_customer(message: InboundMessage, cache: _BatchCache | None) -> Customer | None:
    """The verified sender's existing customer, without creating one."""
    if cache is not None and message.sender_id in cache.customers:
        return cache.customers[message.sender_id]
    identity = (
        ChannelIdentity.objects.filter(channel="email", external_id=message.sender_id)
        .select_related("customer")
        .first()
    )
    if identity is not None:
        return identity.customer
    return ticket_services.customer_find_by_email(message.sender_email)


def _email_route(
    message: InboundMessage, cache: _BatchCache | None, *, released: bool = False
) -> tuple[Customer, Ticket | None, list[str]]:
    """The sender's customer, the ticket to append to (None: a new one) and why the
    message is suspicious ([] when it is not). Raises ``EmailQuarantined`` (policy
    ``reject``, not ``released``) before writing anything."""
    policy = _email_policy()
    if policy == "off":
        customer, _ = _customer_resolve("email", message, cache)
        return customer, _email_thread(customer, message), []
    quarantine = policy == "reject" and not released
    auth = _email_sender_auth(message)
    reasons = [] if auth.authenticated else [auth.summary]
    if not message.sender_email:
        reasons.append("the mail names no sender address: a reply has nowhere to go")
    if reasons and quarantine:
        raise EmailQuarantined(reasons)
    claimed, _ = _email_claimed_ticket(message)
    owner: Customer | None = None
    if claimed is not None:
        if auth.authenticated:
            known = _email_known_customer(message, cache)
            if known is not None and known.pk == claimed.customer_id:
                owner = known
        elif (
            claimed.channel == "email"
            and claimed.origin_platform_id.lower() == message.sender_id.lower()
            and email_customer_is_guest(claimed.customer)
        ):
            owner = claimed.customer  # the unverified thread this sender started
        if owner is None:
            reasons.append(
                f"sender does not match the customer of {claimed.number}, which it replies to"
            )
            if quarantine:
                raise EmailQuarantined(reasons)
    if owner is None:
        customer, _ = _customer_resolve("email", message, cache)
        return customer, None, reasons
    ticket = claimed if claimed is not None and claimed.status != TicketStatus.CLOSED else None
    return owner, ticket, reasons
