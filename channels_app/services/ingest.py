"""Threading one customer message into a ticket (the one-by-one path), and echoes of
what the business sent from the channel's own app."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any

from django.db import transaction

from channels_app import selectors
from channels_app.adapters.base import (
    ChannelAdapter,
    InboundMessage,
    MediaRef,
)
from channels_app.adapters.email.adapter import AUTO_SUBMITTED_KEY
from channels_app.adapters.email.parsing import TICKET_TOKEN
from channels_app.models import ChannelAccount
from channels_app.services.email_auth import SUSPICIOUS_TAG
from channels_app.services.email_threading import _email_route
from channels_app.services.matching import _BatchCache, _customer_resolve
from channels_app.services.media import _enqueue_downloads
from channels_app.services.staged_uploads import staged_uploads_delete_on_commit
from support.db import advisory_xact_lock
from support.errors import Conflict
from support.redaction import truncate
from tickets import services as ticket_services
from tickets.models import (
    ChannelIdentity,
    DeliveryState,
    Direction,
    Message,
    MessageKind,
)

logger = logging.getLogger(__name__)


SUBJECT_MAX_CHARS = 255  # Ticket.subject's length
# A subject made from the first line of the message: this long at most.
DERIVED_SUBJECT_CHARS = 120


def _subject_for(message: InboundMessage, channel_label: str) -> str:
    """The message's subject, or the start of its first line: cut at a word's end and never
    inside a personal detail (``support.redaction.truncate``), as the subject reaches
    model providers (routing's history tool, drafts) redacted, and a half e-mail address
    or card number would not be recognised."""
    given = truncate(message.subject.strip(), SUBJECT_MAX_CHARS)
    if given:
        return given
    first_line = (message.text or "").strip().splitlines()[0:1]
    start = truncate(first_line[0], DERIVED_SUBJECT_CHARS).strip() if first_line else ""
    return start or f"{channel_label} message"


def _new_ticket_subject(message: InboundMessage, channel_label: str) -> str:
    """A new ticket's subject. An e-mail that opens one names no ticket it may go on: the
    ``[T-000123]`` tokens in its subject (a reply to a closed ticket) are dropped, or our
    reply would carry the old token next to the new one and the customer's next reply
    could thread to the old ticket again."""
    if message.subject and TICKET_TOKEN.search(message.subject):
        cleaned = " ".join(TICKET_TOKEN.sub("", message.subject).split())
        message = replace(message, subject=cleaned)
    return _subject_for(message, channel_label)


def _message_metadata(message: InboundMessage) -> dict[str, Any]:
    """What a customer's message keeps besides its text: the channel's own fields, what it
    replies to and when it was sent."""
    metadata = {**message.metadata}
    if message.reply_to_external_id:
        metadata["reply_to"] = message.reply_to_external_id
    if message.timestamp is not None:
        metadata["sent_at"] = message.timestamp.isoformat()
    return metadata


def _new_attachments(media: tuple[MediaRef, ...]) -> list[ticket_services.NewAttachment]:
    return [
        ticket_services.NewAttachment(
            filename=m.filename or "attachment",
            content_type=m.mime_type,
            content=m.content,
            external_url=m.url,
            external_media_id=m.media_id,
            kind=m.kind,
        )
        for m in media
    ]


def _message_ingest(
    adapter: ChannelAdapter,
    account: ChannelAccount,
    message: InboundMessage,
    cache: _BatchCache | None = None,
    *,
    released: bool = False,
) -> bool:
    """Thread one message into a ticket; False when it was already recorded.

    E-mail may raise ``EmailQuarantined`` (policy ``reject``, unless ``released`` by a
    supervisor) before anything is written."""
    channel = adapter.channel
    if not message.external_message_id or not message.sender_id:
        logger.warning("Skipping a %s message without id or sender", channel)
        return False
    account_key = str(account.pk)
    # In a drain the delivery already has its own savepoint; a duplicate message then
    # ends in Conflict, which rolls back message_add / ticket_create's own savepoint.
    block = transaction.atomic() if cache is None else contextlib.nullcontext()
    try:
        with block:
            advisory_xact_lock(f"{channel}:{account.pk}:{message.sender_id}")
            if (cache is None or message.is_echo) and Message.objects.filter(
                channel=channel, channel_message_id=message.external_message_id
            ).exists():
                return False
            if message.is_echo:
                return _echo_record(channel, account, message)
            suspicious: list[str] = []
            if channel == "email":
                customer, ticket, suspicious = _email_route(message, cache, released=released)
            else:
                customer, new_customer = _customer_resolve(channel, message, cache)
                ticket = None
                if not new_customer:  # a customer created just now has no ticket yet
                    ticket = selectors.customer_open_ticket_get(
                        customer=customer, channel=channel, account_id=account_key
                    )
            metadata = _message_metadata(message)
            if suspicious:
                metadata["suspicious"] = suspicious
            attachments = _new_attachments(message.media)
            text = message.text or ("" if attachments else "(empty message)")
            automatic = str(metadata.get(AUTO_SUBMITTED_KEY) or "") if channel == "email" else ""
            if automatic and ticket is not None:
                # written by a program (an out-of-office reply, a bounce: RFC 3834), not the
                # customer: on the timeline as a note, which neither reopens the ticket
                # (nor restarts its SLA clock) nor draws any mail of ours; never a ticket
                # of its own (``_email_route`` sets such mail aside)
                created = ticket_services.message_add(
                    ticket=ticket,
                    body=(
                        f"Automatic e-mail from {message.sender_email or message.sender_id} "
                        f"({automatic}); it does not reopen the ticket.\n\n{text}"
                    ),
                    kind=MessageKind.INTERNAL_NOTE,
                    direction=Direction.OUTBOUND,
                    channel=channel,
                    channel_message_id=message.external_message_id,
                    metadata=metadata,
                    attachments=attachments,
                )
            elif ticket is None:
                ticket = ticket_services.ticket_create(
                    customer=customer,
                    subject=_new_ticket_subject(message, adapter.channel.title()),
                    body=text,
                    channel=channel,
                    channel_account_id=account_key,
                    origin_platform_id=message.sender_id,
                    channel_message_id=message.external_message_id,
                    message_metadata=metadata,
                    attachments=attachments,
                    tags=[SUSPICIOUS_TAG] if suspicious else (),
                )
                created = ticket.messages.get(channel_message_id=message.external_message_id)
            else:
                created = ticket_services.message_add(
                    ticket=ticket,
                    body=text,
                    direction=Direction.INBOUND,
                    author_customer=customer,
                    channel=channel,
                    channel_message_id=message.external_message_id,
                    metadata=metadata,
                    attachments=attachments,
                )
            to_fetch = (
                list(
                    created.attachments.filter(file="")
                    .exclude(external_media_id="", external_url="")
                    .values_list("pk", flat=True)
                )
                if attachments
                else []
            )
            if to_fetch:
                transaction.on_commit(lambda: _enqueue_downloads(to_fetch))
            # The copies our intake kept (a web chat upload) go once the attachment holds
            # its own, committed: one copy of a customer's file, the one erasure deletes.
            # A failed delete leaves a spare copy to the hourly purge; a re-drain finds
            # the message recorded and needs none.
            staged_uploads_delete_on_commit(m.staged_name for m in message.media if m.staged_name)
            return True
    except Conflict:
        return False


def _echo_record(channel: str, account: ChannelAccount, message: InboundMessage) -> bool:
    """A message the business sent from the channel's own app: recorded outbound, no ticket.

    Echoes of our own Send API calls (``app_id`` equal to the account's ``settings.app_id``)
    are skipped: the reply is already on the timeline.
    """
    own_app = str(account.settings.get("app_id", ""))
    if own_app and message.metadata.get("app_id") == own_app:
        return False
    if selectors.reply_part_message_get(
        channel=channel,
        external_id=message.external_message_id,
        customer_external_id=message.sender_id,
    ):
        return False  # a file's message of one of our replies: already on the timeline
    account_key = str(account.pk)
    identity = ChannelIdentity.objects.filter(
        channel=channel, external_id=message.sender_id
    ).first()
    if identity is None:
        return False
    ticket = selectors.customer_open_ticket_get(
        customer=identity.customer, channel=channel, account_id=account_key
    )
    if ticket is None:
        return False
    ticket_services.message_add(
        ticket=ticket,
        body=message.text or "(attachment)",
        direction=Direction.OUTBOUND,
        kind=MessageKind.PUBLIC,
        channel=channel,
        channel_message_id=message.external_message_id,
        delivery_status=DeliveryState.SENT,
        metadata={**message.metadata, "echo": True},
    )
    return True
