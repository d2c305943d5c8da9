"""The timeline: adding messages (the threading rules of ``tickets.thread_rules``),
storing downloaded attachments, delivery status."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from support.errors import Conflict, InvalidInput
from support.parsing import safe_file_name
from tickets.models import (
    DOWNLOAD_ERROR_MAX_CHARS,
    MESSAGE_BODY_MAX_CHARS,
    Attachment,
    AttachmentKind,
    Customer,
    DeliveryState,
    Direction,
    DownloadStatus,
    Message,
    MessageKind,
    SlaTarget,
    Ticket,
    TicketStatus,
    format_ticket_number,
)
from tickets.reply_rules import ReplyFileInfo, reply_check, size_words
from tickets.selectors import ticket_merge_target_visible
from tickets.services.events import _message_event, _ticket_event
from tickets.services.lifecycle import NewAttachment, _attachment_create, _search_vector_for
from tickets.services.sla import sla_stopped_late
from tickets.thread_rules import (
    tickets_customer_message_apply,
)

# --- files an agent attaches (workbench reply box, API) ----------------------------------

#: The most files one reply or note carries (each channel may take fewer).
MESSAGE_FILES_MAX_COUNT = 10
#: What a multipart body holds besides its files: the text (at most 4 bytes a character),
#: the other fields, boundaries and part headers.
MESSAGE_FORM_OVERHEAD_BYTES = 4 * MESSAGE_BODY_MAX_CHARS + 64 * 1024


def message_files_max_bytes() -> int:
    """``TICKET_REPLY_FILES_MAX_BYTES``: the files of one reply or note, together."""
    return int(settings.TICKET_REPLY_FILES_MAX_BYTES)


def _files_too_large(size_text: str) -> InvalidInput:
    says = (
        f"The files of one message can be at most {size_words(message_files_max_bytes())} "
        f"together; {size_text}."
    )
    return InvalidInput(says, details={"files": [says]})


def message_upload_length_check(declared: int | None) -> None:
    """Refuse, before its body is read, a multipart request whose ``Content-Length`` is
    more than the files' cap and a form's text can be (``InvalidInput`` by ``files``)."""
    if declared and declared > message_files_max_bytes() + MESSAGE_FORM_OVERHEAD_BYTES:
        raise _files_too_large(f"this request is {size_words(declared)}")


def _file_kind(content_type: str) -> str:
    """The attachment's kind by its type: image, audio, video, else a document."""
    major = content_type.split("/", 1)[0]
    kinds = (AttachmentKind.IMAGE, AttachmentKind.AUDIO, AttachmentKind.VIDEO)
    return str(major if major in kinds else AttachmentKind.DOCUMENT)


def message_files_read(uploads: Sequence[UploadedFile]) -> list[NewAttachment]:
    """The files an agent attached, as ``NewAttachment``s for ``message_add``: at most
    ``MESSAGE_FILES_MAX_COUNT``, ``TICKET_REPLY_FILES_MAX_BYTES`` together (checked on the
    sizes the parser counted, before any file is read), none empty. Each name goes through
    ``safe_file_name``; the content type is the name's (``mimetypes``), never the one the
    browser claims. Refusals are ``InvalidInput`` by ``files``."""
    if not uploads:
        return []
    if len(uploads) > MESSAGE_FILES_MAX_COUNT:
        says = (
            f"A message can carry at most {MESSAGE_FILES_MAX_COUNT} files; "
            f"this one has {len(uploads)}."
        )
        raise InvalidInput(says, details={"files": [says]})
    total = sum(int(upload.size or 0) for upload in uploads)
    if total > message_files_max_bytes():
        raise _files_too_large(f"these are {size_words(total)}")
    files = []
    for upload in uploads:
        name = safe_file_name(upload.name)
        if not upload.size:
            says = f"{name} is empty."
            raise InvalidInput(says, details={"files": [says]})
        content_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        files.append(
            NewAttachment(
                filename=name,
                content_type=content_type,
                content=upload.read(),
                kind=_file_kind(content_type),
            )
        )
    return files


@transaction.atomic
def message_add(
    *,
    ticket: Ticket,
    body: str = "",
    body_html: str = "",
    kind: str = MessageKind.PUBLIC,
    direction: str = Direction.OUTBOUND,
    author_user: Any = None,
    author_customer: Customer | None = None,
    channel: str | None = None,
    channel_message_id: str | None = None,
    delivery_status: str | None = None,
    metadata: dict[str, Any] | None = None,
    attachments: Sequence[NewAttachment] = (),
) -> Message:
    """Add to the timeline: a customer's message, an agent's public reply or an internal note.

    A public outbound reply is queued for delivery: the channels app (listening to
    ``message.created``) sends it on the ticket's channel, or by e-mail where that channel
    has no way back (API, phone, chatbot hand-off), and gives it its final status (sent,
    delivered or failed with the reason). Such a reply is first checked against what that
    channel takes (``tickets.reply_rules``: text length, files): ``InvalidInput`` naming
    ``body`` or ``files`` and the limit. Duplicate ``channel_message_id`` raises Conflict.
    """
    if kind not in MessageKind.values:
        raise InvalidInput(f"Unknown message kind {kind!r}.", details={"kind": ["Invalid."]})
    if kind != MessageKind.PUBLIC and direction == Direction.INBOUND:
        raise InvalidInput("Customer messages are always public.", details={"kind": ["Invalid."]})
    if not (body.strip() or body_html.strip() or attachments):
        raise InvalidInput(
            "A message needs a body or an attachment.", details={"body": ["Required."]}
        )
    if ticket.merged_into_id is not None:
        # named only to whom may see it (an agent replying on the page of a ticket merged
        # into another team's: docs/workbench.md)
        named = author_user is None or ticket_merge_target_visible(ticket, user=author_user)
        target = format_ticket_number(ticket.merged_into_id) if named else "another ticket"
        raise InvalidInput(
            f"{ticket.number} was merged into {target}.",
            details={"ticket": ["Merged."]},
        )
    now = timezone.now()
    if delivery_status is None:
        is_reply = direction == Direction.OUTBOUND and kind == MessageKind.PUBLIC
        delivery_status = DeliveryState.QUEUED if is_reply else DeliveryState.NONE
    if delivery_status == DeliveryState.QUEUED:
        # a reply about to be sent: within what its channel takes (``tickets.reply_rules``;
        # the channels app's adapters' limits), refused now rather than failed at the send
        reply_check(
            ticket=ticket,
            channel=channel or ticket.channel,
            body=body,
            files=[
                ReplyFileInfo(
                    filename=safe_file_name(item.filename),
                    content_type=item.content_type,
                    size=len(item.content or b""),
                )
                for item in attachments
            ],
        )
    try:
        # No inner savepoint: Conflict leaves this function's atomic block, which rolls
        # back to its own savepoint (or the whole transaction when it is the outermost).
        message = Message.objects.create(
            ticket=ticket,
            direction=direction,
            kind=kind,
            author_user=author_user if getattr(author_user, "is_authenticated", False) else None,
            author_customer=author_customer,
            body_text=body,
            body_html=body_html,
            channel=channel or ticket.channel,
            channel_message_id=channel_message_id,
            delivery_status=delivery_status,
            metadata=metadata or {},
        )
    except IntegrityError as exc:
        raise Conflict(
            "This channel message was already recorded.",
            details={"channel_message_id": [str(channel_message_id)]},
        ) from exc
    for item in attachments:
        _attachment_create(message, item)

    if direction == Direction.INBOUND:
        # the threading rules, shared with the channels' bulk drain (tickets.thread_rules)
        ((ticket, before),) = tickets_customer_message_apply(ticket_ids=[ticket.pk], now=now)
        if ticket.status != before:
            _ticket_event("ticket.updated", ticket, changes={"status": [before, ticket.status]})
        _message_event("message.created", message, ticket=ticket)
        return message
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    fields = ["last_message_at", "updated_at"]
    ticket.last_message_at = now
    if kind == MessageKind.PUBLIC and author_user is not None:
        ticket.waiting_since = None
        fields.append("waiting_since")
        if ticket.first_response_at is None:
            ticket.first_response_at = now
            fields.append("first_response_at")
        if ticket.status == TicketStatus.NEW:
            ticket.status = TicketStatus.OPEN
            fields.append("status")
            _ticket_event("ticket.updated", ticket, changes={"status": ["new", "open"]})
    if kind == MessageKind.PUBLIC:
        # one UPDATE: the search vector (with this message) goes with the other fields
        ticket.search_vector = _search_vector_for(ticket)
        fields.append("search_vector")
    ticket.save(update_fields=fields)
    _message_event("message.created", message, ticket=ticket)
    if "first_response_at" in fields:
        sla_stopped_late(ticket, target=SlaTarget.FIRST_RESPONSE, stopped_at=now)
    return message


@transaction.atomic
def attachment_content_store(
    *, attachment: Attachment, content: bytes, content_type: str = "", filename: str = ""
) -> Attachment:
    """Store a downloaded file for an attachment recorded by reference (idempotent): it
    becomes ``stored``, whatever an earlier attempt said."""
    from django.core.files.base import ContentFile

    attachment = Attachment.objects.select_for_update().get(pk=attachment.pk)
    if attachment.file:
        return attachment
    if filename:
        attachment.filename = safe_file_name(filename)
    if content_type:
        attachment.content_type = content_type[:127]
    attachment.size = len(content)
    attachment.file.save(attachment.filename, ContentFile(content), save=False)
    attachment.download_status = DownloadStatus.STORED
    attachment.download_error = ""
    attachment.save(
        update_fields=[
            "file",
            "filename",
            "content_type",
            "size",
            "download_status",
            "download_error",
        ]
    )
    return attachment


@transaction.atomic
def attachment_download_fail(*, attachment_id: int, error: str) -> bool:
    """Record that a referenced attachment's file will not come, and why (words shown on
    the ticket page and in the API: never a URL with its signature; the caller words it).
    A file stored meanwhile wins. Returns whether anything changed; the message is never
    touched."""
    attachment = Attachment.objects.select_for_update().filter(pk=attachment_id).first()
    if attachment is None or attachment.file:
        return False
    attachment.download_status = DownloadStatus.FAILED
    attachment.download_error = error[:DOWNLOAD_ERROR_MAX_CHARS]
    attachment.save(update_fields=["download_status", "download_error"])
    return True


@transaction.atomic
def message_delivery_update(
    *,
    message: Message,
    status: str,
    at: Any = None,
    error: str = "",
    error_code: str = "",
    channel_message_id: str | None = None,
) -> bool:
    """Apply a delivery status; a late lower status never overwrites a higher one.

    Returns whether anything changed. ``failed`` always applies unless already read.
    """
    from tickets.models import DELIVERY_RANK

    # the ticket read with it for the event's fields (locked: the message only)
    message = (
        Message.objects.select_for_update(of=("self",)).select_related("ticket").get(pk=message.pk)
    )
    at = at or timezone.now()
    fields: list[str] = []
    stamp_field = {
        "sent": "sent_at",
        "delivered": "delivered_at",
        "read": "read_at",
        "failed": "failed_at",
    }.get(status)
    if stamp_field and getattr(message, stamp_field) is None:
        setattr(message, stamp_field, at)
        fields.append(stamp_field)
    if channel_message_id and not message.channel_message_id:
        message.channel_message_id = channel_message_id
        fields.append("channel_message_id")
    current = message.delivery_status
    if status == DeliveryState.FAILED:
        if current != DeliveryState.READ:
            message.delivery_status = status
            message.delivery_error = error[:2000]
            message.delivery_error_code = error_code[:64]
            fields += ["delivery_status", "delivery_error", "delivery_error_code"]
    elif DELIVERY_RANK.get(status, 0) > DELIVERY_RANK.get(current, 0) or current == "failed":
        message.delivery_status = status
        fields.append("delivery_status")
    if not fields:
        return False
    message.save(update_fields=[*fields, "updated_at"])
    _message_event("message.delivery_updated", message, error=message.delivery_error)
    return True
