"""Provider events about messages we sent, each applied once (SendGrid's Event Webhook).

A ``StatusUpdate`` that carries its own ``event_id`` is recorded as a ``SentMessageEvent``
(unique per channel, account and event id) before anything is applied: a repeated event
(SendGrid retries a batch, or sends an event twice) finds its row and changes nothing.
``bounce``/``dropped`` mark the message failed with the reason, ``delivered`` marks it
delivered (``tickets.services.message_delivery_update``, which also pushes the live
update); everything else (``deferred``, ``processed``, ``spamreport``, ``unsubscribe``,
opens and clicks) is only recorded. An event naming no message of ours, or one not sent
through this account, is recorded as unmatched and ignored.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from channels_app.adapters.base import StatusUpdate
from channels_app.models import ChannelAccount, InboundEvent, SentEventOutcome, SentMessageEvent
from channels_app.services.outbound import CHANNEL_REPLY_KIND
from support.delivery import selectors as delivery_selectors
from tickets import services as ticket_services
from tickets.models import Direction, Message, MessageKind

logger = logging.getLogger(__name__)

APPLIED_STATUSES = ("delivered", "failed")
#: Logged at warning: a person asked not to get our mail (the row records it too).
COMPLAINTS = ("spamreport", "unsubscribe", "group_unsubscribe")


def _sent_message(account: ChannelAccount, message_id: int | None) -> Message | None:
    """Our public reply ``message_id`` if its delivery went out through ``account``."""
    if message_id is None:
        return None
    message = Message.objects.filter(
        pk=message_id, direction=Direction.OUTBOUND, kind=MessageKind.PUBLIC
    ).first()
    if message is None:
        return None
    delivery = delivery_selectors.delivery_get(
        target_kind=CHANNEL_REPLY_KIND, idempotency_key=f"message:{message.pk}"
    )
    if delivery is None or delivery.payload.get("account_id") != account.pk:
        return None
    return message


def sent_event_record(
    *, account: ChannelAccount, inbound_event: InboundEvent, status: StatusUpdate
) -> str | None:
    """Record one provider event and apply it once; returns its outcome
    (``SentEventOutcome``), or None when it was recorded before (a duplicate)."""
    message = _sent_message(account, status.message_ref)
    if message is None:
        outcome = SentEventOutcome.UNMATCHED
    elif status.status in APPLIED_STATUSES:
        outcome = SentEventOutcome.APPLIED
    else:
        outcome = SentEventOutcome.RECORDED
    try:
        with transaction.atomic():
            SentMessageEvent.objects.create(
                channel=account.channel,
                account=account,
                external_id=status.event_id[:255],
                event=(status.event or status.status)[:32],
                message=message,
                outcome=outcome,
                inbound_event=inbound_event,
                occurred_at=status.timestamp,
            )
    except IntegrityError:
        return None
    if message is None:
        logger.info(
            "%s event %s (%s) names no message sent through account %s; recorded, ignored",
            account.channel,
            status.event_id,
            status.event,
            account.pk,
        )
    elif outcome == SentEventOutcome.APPLIED:
        ticket_services.message_delivery_update(
            message=message,
            status=status.status,
            at=status.timestamp,
            error=status.error,
            error_code=status.error_code,
        )
    elif status.event in COMPLAINTS:
        logger.warning(
            "%s %s for message %s (ticket %s); recorded",
            account.channel,
            status.event,
            message.pk,
            message.ticket_id,
        )
    return outcome
