"""The drain's bulk path: runs of plain messages threaded into tickets with a few
set-based statements, with exactly the outcome of the one-by-one path."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection
from django.utils import timezone

from channels_app import selectors
from channels_app.adapters.base import (
    ChannelAdapter,
    InboundMessage,
)
from channels_app.models import ChannelAccount
from channels_app.services.ingest import _message_metadata, _subject_for
from channels_app.services.matching import _BatchCache, _customer_resolve, _sender_email
from support.db import ids_reserve, rows_insert
from support.events import outbox_rows, relay_after_commit
from tickets import services as ticket_services
from tickets.models import (
    ChannelIdentity,
    Customer,
    Message,
    Ticket,
)
from tickets.thread_rules import tickets_customer_message_apply

logger = logging.getLogger(__name__)


def _message_is_plain(channel: str, item: object) -> bool:
    """A customer's text (or interactive) message outside e-mail, without media: what the
    bulk path applies. Everything else takes the one-by-one path."""
    return (
        isinstance(item, InboundMessage)
        and channel != "email"
        and not item.is_echo
        and not item.media
        and bool(item.external_message_id)
        and bool(item.sender_id)
    )


def _messages_ingest_bulk(
    adapter: ChannelAdapter,
    account: ChannelAccount,
    messages: list[InboundMessage],
    cache: _BatchCache,
) -> list[bool]:
    """Thread many plain messages (in arrival order) into tickets with a few set-based
    statements instead of ~14 per message; True per message recorded, False per duplicate.

    The same outcome as :func:`_message_ingest` one by one: the same customers, tickets
    (open one on the channel account, else one resolved within the reopen window, else a
    new one), messages, status changes and events, in the same order. The caller runs it
    in a savepoint and falls back to the one-by-one path if anything fails.
    """
    channel = adapter.channel
    account_key = str(account.pk)
    with connection.cursor() as cursor:  # the single path's per-conversation locks
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k",
            [sorted({f"{channel}:{account.pk}:{m.sender_id}" for m in messages})],
        )
    seen = set(
        Message.objects.filter(
            channel=channel, channel_message_id__in=[m.external_message_id for m in messages]
        ).values_list("channel_message_id", flat=True)
    )
    recorded: list[bool] = []
    todo: list[InboundMessage] = []
    for m in messages:
        recorded.append(m.external_message_id not in seen)
        if recorded[-1]:
            seen.add(m.external_message_id)
            todo.append(m)
    if not todo:
        return recorded

    unknown = {m.sender_id for m in todo if m.sender_id not in cache.customers}
    if unknown:
        for identity in ChannelIdentity.objects.filter(
            channel=channel, external_id__in=unknown
        ).select_related("customer"):
            cache.customers[identity.external_id] = identity.customer
    created_now: set[int] = set()  # customers created here have no ticket yet
    # New senders without an e-mail address (nothing to match them by) are created with
    # the batch's rows; the per-sender locks above keep a second creation out.
    newcomers: dict[str, InboundMessage] = {}
    for m in todo:
        if m.sender_id in cache.customers or m.sender_id in newcomers:
            continue
        if _sender_email(channel, m):
            customer, created = _customer_resolve(channel, m, cache)
            if created:
                created_now.add(customer.pk)
        else:
            newcomers[m.sender_id] = m
    people: list[Any] = []
    if newcomers:
        for (sender, m), pk in zip(
            newcomers.items(), ids_reserve(*([Customer] * len(newcomers))), strict=True
        ):
            customer = Customer(
                pk=pk, name=(m.sender_name or sender).strip(), phone=m.sender_phone.strip()
            )
            cache.customers[sender] = customer
            created_now.add(pk)
            people.append(customer)
        people += [
            ChannelIdentity(
                customer=cache.customers[sender],
                channel=channel,
                external_id=sender,
                display_name=m.sender_name[:200],
            )
            for sender, m in newcomers.items()
        ]
    customers = {m.sender_id: cache.customers[m.sender_id] for m in todo}
    tickets = selectors.customers_open_tickets(
        customer_ids=sorted({c.pk for c in customers.values() if c.pk not in created_now}),
        channel=channel,
        account_id=account_key,
    )
    if tickets:  # lock what will change (in id order, as the one-by-one path does)
        locked = {
            t.pk: t
            for t in Ticket.objects.select_for_update()
            .filter(pk__in=[t.pk for t in tickets.values()])
            .order_by("pk")
        }
        tickets = {owner: locked[t.pk] for owner, t in tickets.items()}

    owners = {c.pk for c in customers.values()}
    n_new = len(owners - set(tickets))
    ids = ids_reserve(*([Ticket] * n_new + [Message] * len(todo)))
    ticket_ids, message_ids = iter(ids[:n_new]), iter(ids[n_new:])
    now = timezone.now()
    new_rows: list[Any] = []
    message_rows: list[Any] = []
    events: list[Any] = []
    touched: dict[int, int] = {}  # ticket -> where its first message's events start
    message_events: dict[int, list[Any]] = {}  # ticket -> its messages' events
    for m in todo:
        customer = customers[m.sender_id]
        text = m.text or "(empty message)"
        ticket: Ticket | None = tickets.get(customer.pk)
        if ticket is None:
            ticket = ticket_services.ticket_build(
                pk=next(ticket_ids),
                customer=customer,
                subject=_subject_for(m, channel.title()),
                body=text,
                channel=channel,
                channel_account_id=account_key,
                origin_platform_id=m.sender_id,
                now=now,
            )
            tickets[customer.pk] = ticket
            new_rows.append(ticket)
            events.append(
                ticket_services.ticket_new_event(
                    "ticket.created", ticket, subject=ticket.subject, tags=[]
                )
            )
        elif ticket.pk not in touched:
            touched[ticket.pk] = len(events)
        metadata = _message_metadata(m)
        message = ticket_services.inbound_message_build(
            pk=next(message_ids),
            ticket=ticket,
            customer=customer,
            body=text,
            channel=channel,
            channel_message_id=m.external_message_id,
            metadata=metadata,
        )
        message_rows.append(message)
        event = ticket_services.message_new_event("message.created", message, ticket=ticket)
        message_events.setdefault(ticket.pk, []).append(event)
        events.append(event)
    rows_insert([*people, *new_rows, *message_rows])
    # The threading rules, shared with message_add (tickets.thread_rules); a status they
    # change is published just before the message that changed it, as one by one.
    applied = tickets_customer_message_apply(ticket_ids=list(touched), now=now)
    for ticket, before in sorted(applied, key=lambda pair: -touched[pair[0].pk]):
        for event in message_events.get(ticket.pk, ()):  # the ticket as the message left it
            event.payload.update(ticket_services.message_ticket_fields(ticket))
        if ticket.status != before:
            events.insert(
                touched[ticket.pk],
                ticket_services.ticket_new_event(
                    "ticket.updated", ticket, changes={"status": [before, ticket.status]}
                ),
            )
    rows_insert(outbox_rows(events))
    relay_after_commit()
    return recorded
