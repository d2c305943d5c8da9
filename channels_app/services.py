"""Intake and delivery: every write of the channels app goes through these functions.

Inbound: ``inbound_receive`` verifies, checks and records a delivery (the webhook view
answers at once); ``inbound_event_process`` (a task) normalises it and threads it into
tickets through ``tickets.services``. Outbound: ``outbound_delivery_create`` and
``outbound_delivery_attempt`` send public replies, recording every attempt.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_app import selectors
from channels_app.adapters.base import (
    ChannelAdapter,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundRequest,
    SignatureError,
    StatusUpdate,
    UnknownEvent,
    WebhookRequest,
    get_adapter,
    registered_channels,
)
from channels_app.models import (
    ChannelAccount,
    DeliveryAttempt,
    InboundEvent,
    InboundStatus,
    OutboundDelivery,
)
from support.errors import Conflict, InvalidInput, PermanentError, RetryableError
from support.models import AttemptOutcome, DeliveryStatus
from support.outbound import backoff_seconds
from tickets import services as ticket_services
from tickets.models import (
    Attachment,
    ChannelIdentity,
    Customer,
    DeliveryState,
    Direction,
    Message,
    MessageKind,
    Ticket,
    TicketStatus,
)
from tickets.selectors import parse_ticket_ref

logger = logging.getLogger(__name__)

STATUS_RETRIES = 3  # a status may arrive before our send recorded the message id


# --- accounts ---------------------------------------------------------------------------


SECRET_FIELDS = ("app_secret", "verify_token", "access_token", "consumer_secret", "inbound_token")


def channel_account_upsert(
    *, channel: str, name: str, external_id: str | None = None, **secrets: str | None
) -> ChannelAccount:
    """Create or update an account by (channel, name); only the given secrets change."""
    if channel not in registered_channels() and channel != "chatbot":
        raise InvalidInput(
            f"Unknown channel {channel!r}.",
            details={"channel": [f"One of: {', '.join([*registered_channels(), 'chatbot'])}."]},
        )
    unknown = set(secrets) - set(SECRET_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
    account, _ = ChannelAccount.objects.get_or_create(channel=channel, name=name)
    fields = []
    if external_id is not None:
        account.external_id = external_id
        fields.append("external_id")
    for key, value in secrets.items():
        if value is not None:
            setattr(account, key, value)
            fields.append(key)
    if fields:
        account.save(update_fields=[*fields, "updated_at"])
    return account


# --- inbound: verify, record, acknowledge ------------------------------------------------


def webhook_request_build(
    *, headers: dict[str, str], body: bytes, query: dict[str, str]
) -> WebhookRequest:
    return WebhookRequest(
        headers={k.lower(): v for k, v in headers.items()}, body=body, query=query
    )


def inbound_receive(
    *, account: ChannelAccount, request: WebhookRequest
) -> tuple[InboundEvent, bool]:
    """Verify, check and record one delivery; returns (event, created).

    ``SignatureError``: nothing stored, the refusal counted on the account.
    ``MalformedPayload``: the raw body is kept (status malformed) and the error re-raised.
    A duplicate delivery returns the existing event and creates nothing.
    """
    adapter = get_adapter(account.channel)
    try:
        adapter.verify(account, request)
    except SignatureError:
        ChannelAccount.objects.filter(pk=account.pk).update(rejected_count=F("rejected_count") + 1)
        raise
    headers = {k: v for k, v in request.headers.items() if k in adapter.kept_headers}
    try:
        adapter.check_well_formed(request)
    except MalformedPayload as exc:
        _inbound_store(
            account=account,
            external_id="malformed:" + hashlib.sha256(request.body).hexdigest(),
            headers=headers,
            body=request.body,
            status=InboundStatus.MALFORMED,
            error=str(exc),
        )
        raise
    return _inbound_store(
        account=account,
        external_id=adapter.delivery_id(request)[:255],
        headers=headers,
        body=request.body,
        status=InboundStatus.RECEIVED,
    )


def _inbound_store(
    *,
    account: ChannelAccount,
    external_id: str,
    headers: dict[str, str],
    body: bytes,
    status: str,
    error: str = "",
) -> tuple[InboundEvent, bool]:
    try:
        with transaction.atomic():
            event = InboundEvent.objects.create(
                channel=account.channel,
                account=account,
                external_id=external_id,
                headers=headers,
                body=body,
                status=status,
                error=error,
            )
            if status == InboundStatus.RECEIVED:
                transaction.on_commit(lambda: _enqueue_process(event.pk))
    except IntegrityError:
        existing = InboundEvent.objects.get(
            channel=account.channel, account=account, external_id=external_id
        )
        return existing, False
    return event, True


def _enqueue_process(event_id: int) -> None:
    from channels_app.tasks import inbound_event_process_task

    inbound_event_process_task.delay(event_id)


# --- inbound: process ---------------------------------------------------------------------


@dataclass
class ProcessOutcome:
    created_messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    unmatched_statuses: int = 0
    unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def inbound_event_process(*, event_id: int) -> ProcessOutcome | None:
    """Normalise one recorded delivery into tickets (idempotent: safe to run twice).

    Raises ``RetryableError`` when a status names a message not (yet) recorded; the task
    retries with backoff and the last attempt records it as unmatched.
    """
    with transaction.atomic():
        # One transaction (one commit) per delivery; the row lock makes a concurrent
        # duplicate task wait, then find the event processed. ``of`` spares the account row.
        event = (
            InboundEvent.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=event_id)
        )
        if event.status in (
            InboundStatus.PROCESSED,
            InboundStatus.IGNORED,
            InboundStatus.MALFORMED,
        ):
            return None
        attempts = event.attempts + 1
        adapter = get_adapter(event.channel)
        request = WebhookRequest(headers=event.headers, body=event.body_bytes)
        outcome = ProcessOutcome()
        for item in adapter.parse(event.account, request):
            if isinstance(item, InboundMessage):
                if _message_ingest(adapter, event.account, item):
                    outcome.created_messages += 1
                else:
                    outcome.duplicates += 1
            elif isinstance(item, StatusUpdate):
                if _status_apply(event.channel, item):
                    outcome.statuses += 1
                else:
                    outcome.unmatched_statuses += 1
            else:
                assert isinstance(item, UnknownEvent)
                logger.info(
                    "Unknown %s event acknowledged (event %s): %s",
                    event.channel,
                    event.pk,
                    item.description,
                )
                outcome.unknown += 1
        if outcome.unmatched_statuses and attempts < STATUS_RETRIES:
            # rolls back this attempt; inbound_event_fail counts it
            raise RetryableError(
                f"{outcome.unmatched_statuses} status update(s) for messages not recorded yet."
            )
        only_unknown = outcome.unknown and not (
            outcome.created_messages or outcome.duplicates or outcome.statuses
        )
        InboundEvent.objects.filter(pk=event.pk).update(
            status=InboundStatus.IGNORED if only_unknown else InboundStatus.PROCESSED,
            attempts=attempts,
            processed_at=timezone.now(),
            error="",
            summary=outcome.as_dict(),
        )
    return outcome


def inbound_event_fail(*, event_id: int, error: str, final: bool) -> None:
    InboundEvent.objects.filter(pk=event_id).exclude(status=InboundStatus.PROCESSED).update(
        status=InboundStatus.DEAD if final else InboundStatus.RETRYING,
        error=error[:5000],
        attempts=F("attempts") + 1,
    )


def inbound_event_reprocess(*, event: InboundEvent) -> None:
    """Admin re-drive of a dead (or stuck) event."""
    InboundEvent.objects.filter(pk=event.pk).update(
        status=InboundStatus.RETRYING, attempts=0, error=""
    )
    transaction.on_commit(lambda: _enqueue_process(event.pk))


def _advisory_lock(key: str) -> None:
    """Serialise work on one conversation (e.g. a new customer's first two messages)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def _subject_for(message: InboundMessage, channel_label: str) -> str:
    if message.subject.strip():
        return message.subject.strip()[:255]
    first_line = (message.text or "").strip().splitlines()[0:1]
    if first_line and first_line[0]:
        return first_line[0][:120]
    return f"{channel_label} message"


def _customer_resolve(channel: str, message: InboundMessage) -> Customer:
    identity = (
        ChannelIdentity.objects.filter(channel=channel, external_id=message.sender_id)
        .select_related("customer")
        .first()
    )
    if identity is not None:
        return identity.customer
    customer, _ = ticket_services.customer_get_or_create(
        email=message.sender_email,
        name=message.sender_name or message.sender_id,
        phone=message.sender_phone,
    )
    ticket_services.channel_identity_link(
        customer=customer,
        channel=channel,
        external_id=message.sender_id,
        display_name=message.sender_name,
    )
    return customer


def _email_thread(customer: Customer, message: InboundMessage) -> Ticket | None:
    refs = tuple(
        dict.fromkeys(
            (*message.references, message.reply_to_external_id)
            if message.reply_to_external_id
            else message.references
        )
    )
    ticket = selectors.ticket_for_email_thread(references=refs)
    if ticket is None:
        from channels_app.adapters.email.parsing import TICKET_TOKEN

        match = TICKET_TOKEN.search(message.subject)
        if match:
            ticket = Ticket.objects.filter(pk=parse_ticket_ref(match.group(1))).first()
            if ticket is not None and ticket.customer_id != customer.pk:
                ticket = None  # a token alone never lets a stranger into a ticket
    ticket_or_none: Ticket | None = ticket
    while ticket_or_none is not None and ticket_or_none.merged_into_id is not None:
        ticket_or_none = ticket_or_none.merged_into
    ticket = ticket_or_none
    if ticket is None or ticket.status == TicketStatus.CLOSED:
        return None
    return ticket


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
    adapter: ChannelAdapter, account: ChannelAccount, message: InboundMessage
) -> bool:
    """Thread one message into a ticket; False when it was already recorded."""
    channel = adapter.channel
    if not message.external_message_id or not message.sender_id:
        logger.warning("Skipping a %s message without id or sender", channel)
        return False
    account_key = str(account.pk)
    try:
        with transaction.atomic():
            _advisory_lock(f"{channel}:{account.pk}:{message.sender_id}")
            if Message.objects.filter(
                channel=channel, channel_message_id=message.external_message_id
            ).exists():
                return False
            if message.is_echo:
                return _echo_record(channel, account, message)
            customer = _customer_resolve(channel, message)
            ticket = None
            if channel == "email":
                ticket = _email_thread(customer, message)
            else:
                ticket = selectors.customer_open_ticket_get(
                    customer=customer, channel=channel, account_id=account_key
                )
            metadata = {**message.metadata}
            if message.reply_to_external_id:
                metadata["reply_to"] = message.reply_to_external_id
            if message.timestamp is not None:
                metadata["sent_at"] = message.timestamp.isoformat()
            attachments = _new_attachments(message.media)
            text = message.text or ("" if attachments else "(empty message)")
            if ticket is None:
                ticket = ticket_services.ticket_create(
                    customer=customer,
                    subject=_subject_for(message, adapter.channel.title()),
                    body=text,
                    channel=channel,
                    channel_account_id=account_key,
                    origin_platform_id=message.sender_id,
                    channel_message_id=message.external_message_id,
                    message_metadata=metadata,
                    attachments=attachments,
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
            to_fetch = list(
                created.attachments.filter(file="")
                .exclude(external_media_id="", external_url="")
                .values_list("pk", flat=True)
            )
            if to_fetch:
                transaction.on_commit(lambda: _enqueue_downloads(to_fetch))
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


def _enqueue_downloads(attachment_ids: list[int]) -> None:
    from channels_app.tasks import attachment_download_task

    for pk in attachment_ids:
        attachment_download_task.delay(pk)


def _status_apply(channel: str, status: StatusUpdate) -> bool:
    if status.status not in ("sent", "delivered", "read", "failed"):
        logger.info("Ignoring %s status %r", channel, status.status)
        return True
    if status.watermark is not None:
        messages = list(
            Message.objects.filter(
                channel=channel,
                direction=Direction.OUTBOUND,
                kind=MessageKind.PUBLIC,
                ticket__origin_platform_id=status.recipient_id,
                sent_at__lte=status.watermark,
            ).exclude(channel_message_id=None)
        )
        for covered in messages:
            ticket_services.message_delivery_update(
                message=covered, status=status.status, at=status.timestamp
            )
        return True
    found = Message.objects.filter(
        channel=channel, channel_message_id=status.external_message_id
    ).first()
    if found is None:
        return False
    ticket_services.message_delivery_update(
        message=found,
        status=status.status,
        at=status.timestamp,
        error=status.error,
        error_code=status.error_code,
    )
    return True


def attachment_download(*, attachment_id: int) -> bool:
    """Fetch a referenced attachment through its channel adapter and store it."""
    attachment = Attachment.objects.select_related("message__ticket").get(pk=attachment_id)
    if attachment.file:
        return False
    ticket = attachment.message.ticket
    account = selectors.channel_account_for_ticket(ticket)
    if account is None:
        raise PermanentError(f"No {ticket.channel} account to download media with.")
    adapter = get_adapter(attachment.message.channel)
    fetched = adapter.fetch_media(
        account,
        MediaRef(
            kind=attachment.kind,
            media_id=attachment.external_media_id,
            url=attachment.external_url,
            mime_type=attachment.content_type,
            filename=attachment.filename,
        ),
    )
    ticket_services.attachment_content_store(
        attachment=attachment,
        content=fetched.content,
        content_type=fetched.content_type,
        filename=fetched.filename,
    )
    return True


# --- chatbot hand-off -------------------------------------------------------------------


@transaction.atomic
def chatbot_handoff(
    *,
    source: str,
    customer_email: str,
    subject: str,
    initial_message: str,
    session_id: str,
    transcript: list[dict[str, Any]] | None = None,
    customer_name: str = "",
) -> tuple[Ticket, bool]:
    """Open (once per bot session) a ticket flagged ``is_bot_handoff``."""
    _advisory_lock(f"chatbot:{session_id}")
    existing = Ticket.objects.filter(channel="chatbot", origin_platform_id=session_id).first()
    if existing is not None:
        return existing, False
    customer, _ = ticket_services.customer_get_or_create(email=customer_email, name=customer_name)
    metadata: dict[str, Any] = {"bot_source": source, "bot_session_id": session_id}
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject=subject,
        body=initial_message,
        channel="chatbot",
        is_bot_handoff=True,
        origin_platform_id=session_id,
        message_metadata=metadata,
    )
    if transcript:
        lines = [
            f"{turn.get('role', '?')!s}: {turn.get('text', turn.get('content', ''))!s}"
            for turn in transcript
        ]
        ticket_services.message_add(
            ticket=ticket,
            body="Bot transcript\n" + "\n".join(lines),
            kind=MessageKind.INTERNAL_NOTE,
            direction=Direction.OUTBOUND,
            metadata={"bot_transcript": transcript},
        )
    return ticket, True


# --- outbound ---------------------------------------------------------------------------


def outbound_wanted(payload: dict[str, Any]) -> bool:
    """Whether a ``message.created`` event is a public reply we must deliver."""
    return (
        payload.get("direction") == Direction.OUTBOUND
        and payload.get("kind") == MessageKind.PUBLIC
        and payload.get("delivery_status") == DeliveryState.QUEUED
        and payload.get("channel") in registered_channels()
    )


def outbound_delivery_create(*, message_id: int) -> OutboundDelivery | None:
    """One delivery per queued public reply (idempotent); None when nothing to send."""
    message = Message.objects.select_related("ticket").filter(pk=message_id).first()
    if message is None or not (
        message.direction == Direction.OUTBOUND
        and message.kind == MessageKind.PUBLIC
        and message.channel in registered_channels()
    ):
        return None
    existing = OutboundDelivery.objects.filter(message=message).first()
    if existing is not None:
        return existing
    account = selectors.channel_account_for_ticket(message.ticket)
    if account is None:
        ticket_services.message_delivery_update(
            message=message,
            status=DeliveryState.FAILED,
            error=f"No {message.get_channel_display()} account is configured; not sent.",
            error_code="no_account",
        )
        return None
    try:
        with transaction.atomic():
            return OutboundDelivery.objects.create(
                message=message, account=account, channel=message.channel
            )
    except IntegrityError:
        return OutboundDelivery.objects.get(message=message)


def _outbound_request(delivery: OutboundDelivery) -> OutboundRequest:
    message = delivery.message
    ticket = message.ticket
    recipient = ticket.origin_platform_id
    if not recipient:
        identity = ChannelIdentity.objects.filter(
            customer=ticket.customer, channel=message.channel
        ).first()
        recipient = identity.external_id if identity else ""
    if not recipient and message.channel == "email":
        recipient = ticket.customer.email
    if not recipient:
        raise PermanentError(f"The customer has no {message.channel} identity to reply to.")
    thread: tuple[str, ...] = ()
    outgoing = ""
    if message.channel == "email":
        thread = tuple(
            str(mid)
            for mid in Message.objects.filter(
                ticket=ticket, channel="email", kind=MessageKind.PUBLIC
            )
            .exclude(channel_message_id=None)
            .exclude(pk=message.pk)
            .order_by("created_at")
            .values_list("channel_message_id", flat=True)
        )
        domain = settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN
        outgoing = f"<reply-{message.pk}.{ticket.correlation_id}@{domain}>"
    return OutboundRequest(
        message_id=message.pk,
        ticket_id=ticket.pk,
        ticket_number=ticket.number,
        recipient_id=recipient,
        text=message.body_text,
        subject=ticket.subject,
        last_inbound_at=selectors.last_inbound_at(ticket),  # type: ignore[arg-type]
        thread_message_ids=thread,
        outgoing_message_id=outgoing,
    )


def outbound_delivery_attempt(*, delivery_id: int, expected_attempts: int) -> float | None:
    """Make attempt number ``expected_attempts + 1``; returns the delay before the next
    attempt, or None when the delivery is finished (or another worker owns this attempt).
    """
    lease = timezone.now() + timedelta(seconds=float(settings.CHANNELS_HTTP_TIMEOUT) * 3)
    claimed = OutboundDelivery.objects.filter(
        pk=delivery_id,
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING],
        attempts=expected_attempts,
    ).update(attempts=expected_attempts + 1, next_attempt_at=lease)
    if not claimed:
        return None
    delivery = OutboundDelivery.objects.select_related("message__ticket__customer", "account").get(
        pk=delivery_id
    )
    attempt_no = delivery.attempts
    started = time.monotonic()
    adapter = get_adapter(delivery.channel)
    request_body: dict[str, Any] = {}
    try:
        if delivery.account is None:
            raise PermanentError("The channel account was deleted.")
        outbound = _outbound_request(delivery)
        result = adapter.send(delivery.account, outbound)
    except RetryableError as exc:
        return _attempt_failed(delivery, exc, started, retryable=True)
    except PermanentError as exc:
        return _attempt_failed(delivery, exc, started, retryable=False)
    duration = int((time.monotonic() - started) * 1000)
    request_body = result.request_body
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            outcome=AttemptOutcome.SUCCESS,
            http_status=result.http_status,
            duration_ms=duration,
            request_body=request_body,
            response_body=result.response_body,
        )
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.SUCCEEDED,
            completed_at=timezone.now(),
            next_attempt_at=None,
            external_message_id=result.external_message_id,
            last_http_status=result.http_status,
            last_error="",
        )
        state = DeliveryState.DELIVERED if result.delivered else DeliveryState.SENT
        try:
            with transaction.atomic():
                ticket_services.message_delivery_update(
                    message=delivery.message,
                    status=state,
                    channel_message_id=result.external_message_id or None,
                )
        except IntegrityError:
            # An echo of this very send was recorded first under the same channel id;
            # keep the status, never fail a request the channel already accepted.
            logger.warning(
                "Channel id %s already recorded (echo); message %s keeps none",
                result.external_message_id,
                delivery.message_id,
            )
            ticket_services.message_delivery_update(message=delivery.message, status=state)
    logger.info(
        "Delivered message %s on %s (attempt %s)", delivery.message_id, delivery.channel, attempt_no
    )
    return None


def _attempt_failed(
    delivery: OutboundDelivery, exc: Exception, started: float, *, retryable: bool
) -> float | None:
    duration = int((time.monotonic() - started) * 1000)
    http_status = getattr(exc, "http_status", None)
    error = str(exc)
    max_attempts = int(settings.CHANNELS_OUTBOUND_MAX_ATTEMPTS)
    final = not retryable or delivery.attempts >= max_attempts
    delay: float | None = None
    if not final:
        delay = backoff_seconds(
            delivery.attempts,
            base=float(settings.CHANNELS_OUTBOUND_BACKOFF_BASE),
            cap=float(settings.CHANNELS_OUTBOUND_BACKOFF_CAP),
            retry_after=getattr(exc, "retry_after", None),
        )
    code = getattr(exc, "error_code", "") or (f"http_{http_status}" if http_status else "")
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            outcome=AttemptOutcome.RETRYABLE if retryable else AttemptOutcome.PERMANENT,
            http_status=http_status,
            duration_ms=duration,
            error=error[:5000],
            response_body=str(getattr(exc, "response_text", ""))[:2000],
        )
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.DEAD if final else DeliveryStatus.RETRYING,
            next_attempt_at=None if final else timezone.now() + timedelta(seconds=delay or 0),
            completed_at=timezone.now() if final else None,
            last_error=error[:5000],
            last_http_status=http_status,
            error_code=code[:64],
        )
        if final:
            if retryable:
                error = f"Gave up after {delivery.attempts} attempts: {error}"
            ticket_services.message_delivery_update(
                message=delivery.message,
                status=DeliveryState.FAILED,
                error=error,
                error_code=code,
            )
    logger.warning(
        "Delivery %s attempt %s failed (%s): %s",
        delivery.pk,
        delivery.attempts,
        "dead" if final else f"retry in {delay:.1f}s",
        error[:200],
    )
    return delay


def outbound_delivery_redrive(*, delivery: OutboundDelivery) -> None:
    """A supervisor sends a dead letter again (a fresh set of attempts)."""
    with transaction.atomic():
        updated = OutboundDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.DEAD
        ).update(
            status=DeliveryStatus.RETRYING,
            attempts=0,
            next_attempt_at=timezone.now(),
            completed_at=None,
        )
        if not updated:
            return
        ticket_services.message_delivery_update(
            message=delivery.message, status=DeliveryState.QUEUED
        )
        transaction.on_commit(lambda: _enqueue_attempt(delivery.pk, 0))


def _enqueue_attempt(delivery_id: int, expected: int, countdown: float = 0) -> None:
    from channels_app.tasks import outbound_delivery_attempt_task

    outbound_delivery_attempt_task.apply_async(args=(delivery_id, expected), countdown=countdown)


def outbound_delivery_sweep() -> int:
    """Re-enqueue deliveries whose scheduled retry was lost (e.g. a worker restart)."""
    grace = timezone.now() - timedelta(seconds=60)
    due = (
        OutboundDelivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING]
        )
        .filter(
            Q(next_attempt_at__lt=grace) | Q(next_attempt_at__isnull=True, created_at__lt=grace)
        )
        .values_list("pk", "attempts")[:500]
    )
    count = 0
    for pk, attempts in due:
        _enqueue_attempt(pk, attempts)
        count += 1
    return count


def inbound_event_sweep() -> int:
    """Re-enqueue received events never processed (e.g. the broker was down)."""
    stale = timezone.now() - timedelta(minutes=2)
    ids = list(
        InboundEvent.objects.filter(
            status=InboundStatus.RECEIVED, received_at__lt=stale
        ).values_list("pk", flat=True)[:500]
    )
    for pk in ids:
        _enqueue_process(pk)
    return len(ids)
