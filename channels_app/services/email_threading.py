"""E-mail threading (issue #13): which customer and ticket an e-mail belongs to, under
``CHANNELS_EMAIL_AUTH_POLICY`` (see ``channels_app.services.email_auth``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from channels_app import selectors
from channels_app.adapters.base import (
    InboundMessage,
)
from channels_app.adapters.email.adapter import AUTO_SUBMITTED_KEY, OWN_ADDRESS_KEY
from channels_app.adapters.email.auth import SenderAuth
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


class EmailSetAside(Exception):
    """Raised by the e-mail route before anything is written: the mail is kept only as
    its inbound event (processed, the reasons in its summary, supervisors see it in the
    admin's inbound events), never a ticket. Mail from this account's own address, and
    automatic mail (RFC 3834: an out-of-office reply, a bounce, a newsletter) that threads
    into none of the sender's tickets: a ticket would cost an agent's time, draw a survey
    to an address nobody reads, or loop."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


#: A subject's ticket tokens read, the last ones (a real thread carries two or three).
SUBJECT_TOKENS_READ = 5


def _email_claimed_ticket(
    message: InboundMessage, owned: Callable[[Ticket], bool] | None = None
) -> tuple[Ticket | None, bool]:
    """The ticket the message says it belongs to, by In-Reply-To/References (Message-IDs we
    know), else by a ``[T-000123]`` token in the subject (merges followed); and whether
    only the token named it.

    A subject may carry several tokens: a reply to a closed ticket opened a new one, and
    our reply on that added its token after the old one (``Re: … [T-000001] [T-000002]``).
    The last token naming a ticket that is not closed and that ``owned`` accepts (the
    sender's own: the caller's sender checks) wins; else the last naming one of the
    sender's (closed: a new ticket follows), else the last token's ticket (a stranger's:
    the caller refuses it as before)."""
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

        named: list[Ticket] = []
        tokens = list(dict.fromkeys(TICKET_TOKEN.findall(message.subject)))
        for ref in tokens[-SUBJECT_TOKENS_READ:]:
            found = Ticket.objects.filter(pk=parse_ticket_ref(ref)).first()
            if found is not None:
                named.append(_merge_target(found))
        mine = [t for t in reversed(named) if owned is None or owned(t)]
        ticket = next(
            (t for t in mine if t.status != TicketStatus.CLOSED),
            mine[0] if mine else named[-1] if named else None,
        )
        by_token = ticket is not None
    if ticket is not None:
        ticket = _merge_target(ticket)
    return ticket, by_token


def _merge_target(ticket: Ticket) -> Ticket:
    """The ticket ``ticket`` was merged into (followed to the end), else itself."""
    while ticket.merged_into_id is not None and ticket.merged_into is not None:
        ticket = ticket.merged_into
    return ticket


def _email_thread(customer: Customer, message: InboundMessage) -> Ticket | None:
    """Policy ``off``: threading as before the sender checks (headers for anyone, the
    token only for the ticket's own customer)."""
    ticket, by_token = _email_claimed_ticket(message, lambda t: t.customer_id == customer.pk)
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


def _email_owner(
    ticket: Ticket, message: InboundMessage, auth: SenderAuth, cache: _BatchCache | None
) -> Customer | None:
    """The customer of ``ticket`` when the sender is them (None: a stranger to it): a
    verified sender whose existing customer it is, or the unverified sender of the thread
    it started (a guest customer)."""
    if auth.authenticated:
        known = _email_known_customer(message, cache)
        return known if known is not None and known.pk == ticket.customer_id else None
    if (
        ticket.channel == "email"
        and ticket.origin_platform_id.lower() == message.sender_id.lower()
        and email_customer_is_guest(ticket.customer)
    ):
        return ticket.customer  # the unverified thread this sender started
    return None


def _set_aside_reason(automatic: str) -> str:
    return (
        f"automatic mail ({automatic}) that replies to no open ticket of its sender: "
        "not made a ticket (it would reopen nothing and draw no survey)"
    )


def _email_route(
    message: InboundMessage, cache: _BatchCache | None, *, released: bool = False
) -> tuple[Customer, Ticket | None, list[str]]:
    """The sender's customer, the ticket to append to (None: a new one) and why the
    message is suspicious ([] when it is not). Raises ``EmailQuarantined`` (policy
    ``reject``, not ``released``) or ``EmailSetAside`` (mail from our own address;
    automatic mail with no ticket of its sender to go on) before writing anything.

    Automatic mail (``AUTO_SUBMITTED_KEY``, RFC 3834) is routed only to a ticket it
    threads into whose customer is its sender (the same checks as any mail), never a new
    one; the caller records it there without reopening (``channels_app.services.ingest``)."""
    own = str(message.metadata.get(OWN_ADDRESS_KEY) or "")
    if own:
        raise EmailSetAside([f"{own}: our own mail, never a ticket"])
    automatic = str(message.metadata.get(AUTO_SUBMITTED_KEY) or "")
    policy = _email_policy()
    if policy == "off":
        if automatic:
            known = _email_known_customer(message, cache)
            ticket = _email_thread(known, message) if known is not None else None
            if known is None or ticket is None:
                raise EmailSetAside([_set_aside_reason(automatic)])
            return known, ticket, []
        customer, _ = _customer_resolve("email", message, cache)
        return customer, _email_thread(customer, message), []
    quarantine = policy == "reject" and not released
    auth = _email_sender_auth(message)
    reasons = [] if auth.authenticated else [auth.summary]
    if not message.sender_email:
        reasons.append("the mail names no sender address: a reply has nowhere to go")
    if reasons and quarantine:
        raise EmailQuarantined(reasons)
    claimed, _ = _email_claimed_ticket(
        message, lambda t: _email_owner(t, message, auth, cache) is not None
    )
    owner = _email_owner(claimed, message, auth, cache) if claimed is not None else None
    ticket = claimed if claimed is not None and claimed.status != TicketStatus.CLOSED else None
    if automatic and (owner is None or ticket is None):
        raise EmailSetAside([_set_aside_reason(automatic)])
    if claimed is not None and owner is None:
        reasons.append(
            f"sender does not match the customer of {claimed.number}, which it replies to"
        )
        if quarantine:
            raise EmailQuarantined(reasons)
    if owner is None:
        customer, _ = _customer_resolve("email", message, cache)
        return customer, None, reasons
    return owner, ticket, reasons
