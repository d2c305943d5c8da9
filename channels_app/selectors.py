"""Reads of the channels app."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app.adapters.webchat.adapter import message_visitor, visitor_message_prefix
from channels_app.models import ChannelAccount
from support.errors import NotFound
from tickets.models import (
    Attachment,
    ChannelIdentity,
    Customer,
    Direction,
    Message,
    MessageKind,
    Ticket,
    TicketStatus,
)
from tickets.selectors import message_list_written_on, written_on_ticket_id

OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


def channel_account_get(*, channel: str, webhook_token: str) -> ChannelAccount:
    try:
        return ChannelAccount.objects.get(
            channel=channel, webhook_token=webhook_token, is_active=True
        )
    except ChannelAccount.DoesNotExist:
        raise NotFound(f"No active {channel} account for this webhook URL.") from None


# The webhook hot path looks its account up by path token on every delivery: keep active
# accounts in process memory for a few seconds. Saves and deletes in this process clear it
# (apps.ready connects the signals); other processes see a change within the TTL.
ACCOUNT_CACHE_SECONDS = 5.0
_account_cache: dict[tuple[str, str], tuple[float, ChannelAccount]] = {}


def channel_account_get_cached(*, channel: str, webhook_token: str) -> ChannelAccount:
    key = (channel, webhook_token)
    now = time.monotonic()
    hit = _account_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    account = channel_account_get(channel=channel, webhook_token=webhook_token)
    if len(_account_cache) > 1000:
        _account_cache.clear()
    _account_cache[key] = (now + ACCOUNT_CACHE_SECONDS, account)
    return account


def channel_account_cache_clear(**_: object) -> None:
    _account_cache.clear()


def channel_account_for_ticket(ticket: Ticket) -> ChannelAccount | None:
    """The account a ticket came through, else the channel's first active account."""
    qs = ChannelAccount.objects.filter(channel=ticket.channel, is_active=True)
    if ticket.channel_account_id.isdigit():
        found = qs.filter(pk=int(ticket.channel_account_id)).first()
        if found is not None:
            return found
    return qs.order_by("pk").first()


def customer_open_ticket_get(*, customer: Customer, channel: str, account_id: str) -> Ticket | None:
    """The customer's open ticket on this channel account, else one resolved within the
    reopen window (``CHANNEL_REOPEN_WINDOW_HOURS``), else None: the rule of
    :func:`customers_open_tickets` (the bulk drain's), for one customer."""
    return customers_open_tickets(
        customer_ids=[customer.pk], channel=channel, account_id=account_id
    ).get(customer.pk)


def ticket_for_email_thread(*, references: tuple[str, ...]) -> Ticket | None:
    """The ticket holding any of these Message-IDs (our replies or the customer's mails)."""
    if not references:
        return None
    message = (
        Message.objects.filter(channel="email", channel_message_id__in=list(references))
        .select_related("ticket")
        .order_by("-created_at")
        .first()
    )
    return message.ticket if message else None


def ticket_conversation(ticket: Ticket) -> QuerySet[Message]:
    """The entries of ``ticket``'s conversation: those on it now and those written on it
    that a merge has since moved to another ticket (``message_list_written_on``). For a
    ticket never merged away, its own entries; for a merged one, still its own, so a reply
    written on it before the merge answers what its customer wrote (docs/channels.md)."""
    moved_away = message_list_written_on(ticket=ticket).exclude(ticket=ticket)
    return Message.objects.filter(Q(ticket=ticket) | Q(pk__in=moved_away.values("pk")))


def last_inbound_at(ticket: Ticket, channel: str | None = None) -> datetime | None:
    """When the customer last wrote on ``channel`` (the reply's; default the ticket's) in
    ``ticket``'s conversation, by the customer's own clock: what the messaging windows
    (WhatsApp's, Messenger's and Instagram's 24 hours, ``MetaAdapter.reply_window_open``)
    are counted from. Only the channel's own messages count (an e-mail the customer sent
    opens no WhatsApp window); a message's time is when it was sent (``metadata.sent_at``,
    from the channel's payload, ``services.ingest``), else when we recorded it
    (``created_at``), never later than that (a sender's clock ahead of ours). A message
    Meta delivered late (a webhook retried for hours) thus counts from when the customer
    wrote it, as Meta counts it. ``None``: the customer never wrote on the channel.

    Messages carry no channel account, so a conversation merged from another account's
    ticket on the same channel counts too."""
    rows = (
        ticket_conversation(ticket)
        .filter(direction=Direction.INBOUND, channel=channel or ticket.channel)
        .order_by("-created_at")
        .values_list("created_at", "metadata__sent_at")
    )
    latest: datetime | None = None
    for created_at, sent_at in rows.iterator(chunk_size=50):
        if latest is not None and created_at <= latest:
            break  # every earlier message was written before it was recorded
        written = min(_sent_at(sent_at) or created_at, created_at)
        latest = written if latest is None else max(latest, written)
    return latest


def _sent_at(value: object) -> datetime | None:
    """A message's ``metadata.sent_at`` (ISO 8601) as an aware datetime; ``None`` when it is
    missing or unreadable (a naive one is UTC)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def webchat_messages(*, visitor_id: str, account_id: int, after_id: int = 0) -> list[Message]:
    """The visitor's own public web chat messages and the replies sent to it (for the
    widget's polling), by the visitor each message names (``<visitor>:…`` channel ids),
    never by the ticket it sits on: a merge can put several visitors' chats on one ticket
    (every visitor is its own guest customer). Looked up among the tickets of the customer
    who now holds the visitor's identity (a merge moves it with the messages)."""
    customer_id = (
        ChannelIdentity.objects.filter(channel="webchat", external_id=visitor_id)
        .values_list("customer_id", flat=True)
        .first()
    )
    if customer_id is None:
        return []
    return list(
        Message.objects.filter(
            ticket__customer_id=customer_id,
            channel="webchat",
            channel_message_id__startswith=visitor_message_prefix(visitor_id),
            kind="public",
            id__gt=after_id,
        )
        .prefetch_related("attachments")
        .order_by("id")[:200]
    )


def webchat_file_get(*, visitor_id: str, attachment_id: int) -> Attachment | None:
    """A file an agent sent to this web chat visitor, or one the visitor sent itself: an
    attachment, stored, of an outbound public (or an inbound) web chat message the
    visitor's own conversation holds (the same rule as ``webchat_messages``: by the
    visitor its channel id names, among the tickets of the customer who now holds the
    visitor's identity). None for anything else (another
    visitor's, the customer's own, an internal note's)."""
    customer_id = (
        ChannelIdentity.objects.filter(channel="webchat", external_id=visitor_id)
        .values_list("customer_id", flat=True)
        .first()
    )
    if customer_id is None:
        return None
    return (
        Attachment.objects.filter(
            pk=attachment_id,
            message__ticket__customer_id=customer_id,
            message__channel="webchat",
            message__channel_message_id__startswith=visitor_message_prefix(visitor_id),
        )
        .filter(
            Q(message__direction=Direction.OUTBOUND, message__kind=MessageKind.PUBLIC)
            | Q(message__direction=Direction.INBOUND)
        )
        .exclude(file="")
        .first()
    )


def handoff_file_get(*, account_id: int, attachment_id: int) -> Attachment | None:
    """A file an agent sent on a hand-off ticket of chatbot account ``account_id``: an
    attachment, stored, of an outbound public message (an agent's reply) written on a
    ticket that account handed off, wherever a merge has since moved it
    (``tickets.selectors.written_on_ticket_id``). None for anything else (another bot's or
    an API-key hand-off's, an internal note's, the customer's own, any other ticket's,
    another ticket's merged into the hand-off)."""
    handoffs = Ticket.objects.filter(
        channel="chatbot", is_bot_handoff=True, channel_account_id=str(account_id)
    ).values("pk")
    return (
        Attachment.objects.filter(
            pk=attachment_id,
            message__direction=Direction.OUTBOUND,
            message__kind=MessageKind.PUBLIC,
        )
        .exclude(file="")
        .alias(written_on=written_on_ticket_id("message__"))
        .filter(written_on__in=handoffs)
        .first()
    )


def webchat_reply_visitor(ticket: Ticket) -> str:
    """The visitor an agent's web chat reply goes to: the one who wrote last on the ticket
    (after a merge it may hold several visitors' chats), else the ticket's own visitor."""
    for channel_message_id in (
        ticket_conversation(ticket)
        .filter(channel="webchat", direction=Direction.INBOUND)
        .exclude(channel_message_id=None)
        .order_by("-created_at", "-id")
        .values_list("channel_message_id", flat=True)[:20]
    ):
        visitor = message_visitor(channel_message_id)
        if visitor:
            return visitor
    return ticket.origin_platform_id


def customers_open_tickets(
    *, customer_ids: list[int], channel: str, account_id: str
) -> dict[int, Ticket]:
    """Each customer's open ticket on this channel account, else one resolved within the
    reopen window (``CHANNEL_REOPEN_WINDOW_HOURS``): the one threading rule for both the
    one-by-one path (:func:`customer_open_ticket_get`) and the bulk drain, in two queries
    (open, then resolved within the window for the rest). Not locked (PostgreSQL refuses
    ``FOR UPDATE`` with ``DISTINCT``): a writer locks the tickets it changes by id."""
    if not customer_ids:
        return {}
    base = Ticket.objects.filter(
        customer_id__in=customer_ids,
        channel=channel,
        channel_account_id=account_id,
        merged_into=None,
    )
    found: dict[int, Ticket] = {}
    for ticket in (
        base.filter(status__in=OPEN_STATUSES)
        .order_by("customer_id", "-last_message_at", "-id")
        .distinct("customer_id")
    ):
        found[ticket.customer_id] = ticket
    rest = [pk for pk in customer_ids if pk not in found]
    if rest:
        window = timedelta(hours=int(settings.CHANNEL_REOPEN_WINDOW_HOURS))
        for ticket in (
            base.filter(
                customer_id__in=rest,
                status=TicketStatus.RESOLVED,
                resolved_at__gte=timezone.now() - window,
            )
            .order_by("customer_id", "-resolved_at", "-id")
            .distinct("customer_id")
        ):
            found[ticket.customer_id] = ticket
    return found


#: ``Message.metadata`` key of a reply's parts already sent (``services.reply_parts``).
REPLY_PARTS_KEY = "reply_parts"


def reply_parts_get(*, message_id: int) -> dict[str, dict[str, str]]:
    """The recorded parts of a reply (``services.reply_parts``); empty: none sent yet."""
    metadata = Message.objects.filter(pk=message_id).values_list("metadata", flat=True).first()
    parts = metadata.get(REPLY_PARTS_KEY) if isinstance(metadata, dict) else None
    if not isinstance(parts, dict):
        return {}
    return {str(k): dict(v) for k, v in parts.items() if isinstance(v, dict)}


#: How many of a customer's latest replies with parts a status or an echo is matched against.
REPLY_PART_LOOKBACK = 50


def reply_part_message_get(
    *, channel: str, external_id: str, customer_external_id: str
) -> Message | None:
    """The reply one of whose parts (a file's own message: ``services.reply_parts``) the
    channel calls ``external_id``, among the latest replies to the customer it knows as
    ``customer_external_id``; None when none. A reply is known by its first part's id
    (``channel_message_id``): statuses and echoes of its other parts find it here."""
    if not (external_id and customer_external_id):
        return None
    identity = ChannelIdentity.objects.filter(
        channel=channel, external_id=customer_external_id
    ).first()
    if identity is None:
        return None
    recent = Message.objects.filter(
        ticket__customer_id=identity.customer_id,
        channel=channel,
        direction=Direction.OUTBOUND,
        metadata__has_key=REPLY_PARTS_KEY,
    ).order_by("-created_at")[:REPLY_PART_LOOKBACK]
    for message in recent:
        parts = message.metadata.get(REPLY_PARTS_KEY)
        if isinstance(parts, dict) and any(
            isinstance(record, dict) and record.get("id") == external_id
            for record in parts.values()
        ):
            return message
    return None
