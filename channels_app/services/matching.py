"""Customer matching: which customer a channel sender is (cached within a drain batch),
and the per-conversation lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from channels_app.adapters.base import (
    InboundMessage,
    get_adapter,
)
from channels_app.services.email_auth import _email_guest_create, _email_sender_trusted
from tickets import services as ticket_services
from tickets.models import (
    ChannelIdentity,
    Customer,
)

logger = logging.getLogger(__name__)


@dataclass
class _BatchCache:
    """Look-ups reused within one transaction (one drain batch)."""

    customers: dict[str, Customer] = field(default_factory=dict)


def _customer_resolve(
    channel: str, message: InboundMessage, cache: _BatchCache | None = None
) -> tuple[Customer, bool]:
    """The sender's customer, and whether it was created just now (so has no ticket)."""
    if channel == "email" and not _email_sender_trusted(message):
        # Never cached: the cache key is the address, whose owner this may not be.
        return _customer_lookup(channel, message)
    if cache is not None and message.sender_id in cache.customers:
        return cache.customers[message.sender_id], False
    customer, created = _customer_lookup(channel, message)
    if cache is not None:
        cache.customers[message.sender_id] = customer
    return customer, created


def _sender_email(channel: str, message: InboundMessage) -> str:
    """The sender's email when the channel vouches for it, else "" (web chat visitors
    type theirs: it must never find, and so expose, an existing customer)."""
    return message.sender_email if get_adapter(channel).trusts_sender_email else ""


def _customer_lookup(channel: str, message: InboundMessage) -> tuple[Customer, bool]:
    if channel == "email" and not _email_sender_trusted(message):
        # E-mail spoofing (issue #13): a From address that SPF/DKIM do not vouch for is
        # never linked to the address's customer or identity (see _email_route).
        return _email_guest_create(message), True
    identity = (
        ChannelIdentity.objects.filter(channel=channel, external_id=message.sender_id)
        .select_related("customer")
        .first()
    )
    if identity is not None:
        return identity.customer, False
    customer, created = ticket_services.customer_get_or_create(
        email=_sender_email(channel, message),
        name=message.sender_name or message.sender_id,
        phone=message.sender_phone,
    )
    ticket_services.channel_identity_link(
        customer=customer,
        channel=channel,
        external_id=message.sender_id,
        display_name=message.sender_name,
    )
    return customer, created
