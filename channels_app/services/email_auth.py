"""E-mail sender authentication (issue #13): whether a From address may be taken at its
word, and the quarantine and guest customers that follow when it may not."""

from __future__ import annotations

import logging

from django.conf import settings

from channels_app.adapters.base import (
    InboundMessage,
)
from channels_app.adapters.email.auth import SenderAuth, sender_auth
from tickets import services as ticket_services
from tickets.models import (
    ChannelIdentity,
    Customer,
    Direction,
    Message,
    Ticket,
)

logger = logging.getLogger(__name__)


# --- e-mail: sender authentication and threading (issue #13) ------------------------------
#
# SendGrid posts SPF and DKIM results; a From address is trusted only with an aligned pass
# (``channels_app.adapters.email.auth``). ``CHANNELS_EMAIL_AUTH_POLICY``:
#
# - ``mark`` (default): an unverified sender never resolves to the address's customer (a
#   guest customer of its own, no identity), and a message never threads into a ticket of
#   another customer (it starts its own ticket). Both are recorded on the message as
#   ``metadata["suspicious"]`` (shown in the timeline) and tag the new ticket.
# - ``reject``: the same messages are not created; the delivery is kept as a
#   ``quarantined`` InboundEvent that a supervisor can release (then as ``mark``).
# - ``off``: the results are ignored and threading is as it was before.

SUSPICIOUS_TAG = "suspicious-sender"


class EmailQuarantined(Exception):
    """Raised by the e-mail route before anything is written (policy ``reject``)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _email_policy() -> str:
    return str(getattr(settings, "CHANNELS_EMAIL_AUTH_POLICY", "mark"))


def _email_sender_auth(message: InboundMessage) -> SenderAuth:
    meta = message.metadata
    return sender_auth(
        from_address=message.sender_email,
        spf=str(meta.get("spf") or ""),
        dkim=str(meta.get("dkim") or ""),
        envelope_from=str(meta.get("envelope_from") or ""),
    )


def _email_sender_trusted(message: InboundMessage) -> bool:
    """Whether the From address may be taken at its word: SPF or DKIM passed for its
    domain (or the policy is ``off``)."""
    return _email_policy() == "off" or _email_sender_auth(message).authenticated


def _email_guest_create(message: InboundMessage) -> Customer:
    """A customer for one unverified sender: no e-mail, no identity, so nothing links it to
    the address's real owner (an agent may merge it after checking)."""
    address = message.sender_email
    who = message.sender_name.strip()
    if not address:  # the mail named no sender address (the adapter's ``no-address:`` id)
        name = f"{who or 'Unknown sender'} (no sender address)"
    else:
        name = f"{who} (unverified: {address})" if who else f"{address} (unverified)"
    customer, _ = ticket_services.customer_get_or_create(email="", name=name[:200])
    return customer


def email_customer_is_guest(customer: Customer) -> bool:
    """Whether ``customer`` is a guest made for an unverified sender (no e-mail address, no
    identity): nothing says who it is."""
    return not customer.email and not ChannelIdentity.objects.filter(customer=customer).exists()


def email_ticket_sender_unverified(ticket: Ticket) -> bool:
    """Whether nobody has shown that the sender of an e-mail ticket owns the address it
    names: its customer is a guest, the ticket carries the ``suspicious-sender`` tag, or one
    of its inbound messages is marked ``suspicious``. Nothing is mailed there
    automatically (an attacker's subject in our signed mail, to the address they named);
    an agent may still reply after checking."""
    return (
        email_customer_is_guest(ticket.customer)
        or ticket.tags.filter(name=SUSPICIOUS_TAG).exists()
        or Message.objects.filter(
            ticket=ticket, direction=Direction.INBOUND, metadata__has_key="suspicious"
        ).exists()
    )
