"""Outbound: public replies handed to the delivery engine (``support.delivery``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from channels_app import selectors
from channels_app.adapters.base import (
    OutboundFile,
    OutboundRequest,
    get_adapter,
    registered_channels,
)
from channels_app.adapters.email.adapter import NO_ADDRESS_PREFIX
from channels_app.adapters.email.outgoing import EmailOutboundRequest
from channels_app.adapters.limits import reply_limits_problems
from channels_app.models import ChannelAccount
from channels_app.services.handoff import handoff_reply_address, handoff_reply_deliveries_create
from channels_app.services.reply_limits import channel_label
from channels_app.services.survey_link import survey_text_with_link
from support.aws import aws_error
from support.delivery import selectors as delivery_selectors
from support.delivery.models import Delivery, Outcome
from support.delivery.registry import (
    Change,
    DeliveryChange,
    DeliveryError,
    Schedule,
    SendResult,
    TargetKind,
)
from support.delivery.services import deliveries_outcome_replay, delivery_enqueue
from support.errors import PermanentError
from tickets import services as ticket_services
from tickets.attachments import attachment_provider_url
from tickets.models import (
    Attachment,
    Channel,
    ChannelIdentity,
    DeliveryState,
    Direction,
    Message,
    MessageKind,
    Ticket,
)
from tickets.selectors import customer_is_erased, message_written_on_ticket_get

logger = logging.getLogger(__name__)


# --- outbound ---------------------------------------------------------------------------
#
# A public reply is a ``support.delivery`` delivery of kind ``channel_reply`` (one per
# message: idempotency key ``message:<id>``; target ``<channel>:<account id>``, so a
# failing account pauses alone). The engine leases, retries, dead-letters and sweeps; this
# section says how to send one reply and keeps the message's delivery status in step.

CHANNEL_REPLY_KIND = "channel_reply"


def outbound_wanted(payload: dict[str, Any]) -> bool:
    """Whether a ``message.created`` event is a public reply we must deliver: every queued
    one, whatever its channel (a channel with no adapter of its own, i.e. a chatbot
    hand-off, an API or a phone ticket, goes by e-mail or is marked failed, never left
    queued)."""
    return (
        payload.get("direction") == Direction.OUTBOUND
        and payload.get("kind") == MessageKind.PUBLIC
        and payload.get("delivery_status") == DeliveryState.QUEUED
        and payload.get("channel") in Channel.values
    )


def email_reply_delivery_create(message: Message, *, address: str) -> Delivery | None:
    """A reply on a ticket whose channel has no adapter of its own, sent by e-mail to
    ``address`` (a ``channel_reply`` delivery through the first active e-mail account,
    which keeps the message's status). When it cannot be sent (no e-mail account, no
    address) the message is marked ``failed`` at once with the reason, never left
    ``queued``. Idempotent per message."""
    key = f"message:{message.pk}"
    existing = delivery_selectors.delivery_get(target_kind=CHANNEL_REPLY_KIND, idempotency_key=key)
    if existing is not None:
        return existing
    account = (
        ChannelAccount.objects.filter(channel=Channel.EMAIL, is_active=True).order_by("pk").first()
    )
    if not address:
        problem, code = (
            f"No channel to reach this customer: a {message.get_channel_display()} ticket "
            "is answered by e-mail and the customer has no e-mail address; not sent.",
            "no_channel",
        )
    elif Channel.EMAIL not in registered_channels() or account is None:
        problem, code = "No e-mail account is configured; the reply was not sent.", "no_account"
    else:
        return _reply_enqueue(message, key=key, account=account, channel=Channel.EMAIL)
    ticket_services.message_delivery_update(
        message=message, status=DeliveryState.FAILED, error=problem, error_code=code
    )
    return None


@transaction.atomic
def outbound_delivery_create(*, message_id: int) -> Delivery | None:
    """One delivery per queued public reply (idempotent); None when nothing to send.
    All or nothing (one transaction): a hand-off reply's e-mail and callback deliveries
    are created together, so a failure between them leaves neither (and the sweep, which
    looks for the e-mail one, tries again)."""
    message = Message.objects.select_related("ticket__customer").filter(pk=message_id).first()
    if message is None or not (
        message.direction == Direction.OUTBOUND and message.kind == MessageKind.PUBLIC
    ):
        return None
    if message.channel == Channel.CHATBOT:
        return handoff_reply_deliveries_create(message)
    ticket = message_written_on_ticket_get(message=message) or message.ticket
    if message.channel not in registered_channels():
        # API and phone tickets: no channel to answer on but the customer's e-mail
        return email_reply_delivery_create(message, address=ticket.customer.email)
    key = f"message:{message.pk}"
    existing = delivery_selectors.delivery_get(target_kind=CHANNEL_REPLY_KIND, idempotency_key=key)
    if existing is not None:
        return existing
    account = selectors.channel_account_for_ticket(ticket)
    if account is None:
        ticket_services.message_delivery_update(
            message=message,
            status=DeliveryState.FAILED,
            error=f"No {message.get_channel_display()} account is configured; not sent.",
            error_code="no_account",
        )
        return None
    return _reply_enqueue(message, key=key, account=account, channel=message.channel)


#: How old a queued public reply with no delivery must be before the sweep creates it
#: (its ``message.created`` event normally does within seconds).
REPLY_SWEEP_STALE_SECONDS = 120.0
#: Replies taken per sweep (the next sweep takes the rest).
REPLY_SWEEP_BATCH = 500
#: A queued reply older than this that never got a delivery is not sent late (days after
#: the conversation moved on, perhaps to a closed ticket): it is marked failed, saying so,
#: for the agent to send again if it still applies.
REPLY_SWEEP_MAX_AGE = timedelta(days=3)


def _queued_replies() -> QuerySet[Message]:
    """Public replies still ``queued`` on a channel (the partial index
    message_reply_queued_idx)."""
    return Message.objects.filter(
        direction=Direction.OUTBOUND,
        kind=MessageKind.PUBLIC,
        delivery_status=DeliveryState.QUEUED,
        channel__in=Channel.values,
    )


def _reply_delivery() -> QuerySet[Delivery]:
    """The delivery of the outer query's reply (its idempotency key ``message:<pk>``)."""
    return Delivery.objects.filter(
        target_kind=CHANNEL_REPLY_KIND,
        idempotency_key=Concat(Value("message:"), Cast(OuterRef("pk"), CharField())),
    )


def outbound_replies_sweep(*, stale_seconds: float = REPLY_SWEEP_STALE_SECONDS) -> int:
    """Create the delivery of every public reply still ``queued`` ``stale_seconds`` after
    it was written that has none: its send task was published (the outbox event marked
    delivered) and then failed or was lost (the database failed over, a worker was
    killed, the broker dropped it). Each goes through ``outbound_delivery_create``
    (idempotent: one delivery per message), after which the delivery engine owns it or the
    message is ``failed`` with the reason. Returns how many it handled. The beat runs it
    every minute; a worker runs it with 0 each time it (re)connects to the broker
    (``support.celery``)."""
    now = timezone.now()
    stale = now - timedelta(seconds=stale_seconds)
    message_ids = list(
        _queued_replies()
        .filter(created_at__lt=stale)
        .exclude(Exists(_reply_delivery()))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:REPLY_SWEEP_BATCH]
    )
    handled = 0
    too_old = set(
        Message.objects.filter(
            pk__in=message_ids, created_at__lt=now - REPLY_SWEEP_MAX_AGE
        ).values_list("pk", flat=True)
    )
    for message_id in message_ids:
        try:
            if message_id in too_old:
                _reply_fail(
                    message_id,
                    "Not sent: it waited more than "
                    f"{REPLY_SWEEP_MAX_AGE.days} days without being handed to the channel "
                    "(a lost task); send it again if it still applies.",
                    "not_sent_in_time",
                )
            else:
                outbound_delivery_create(message_id=message_id)
        except PermanentError as exc:  # it can never be sent: said on the message, once
            _reply_fail(message_id, f"Not sent: {exc}", exc.error_code or "not_sendable")
        except Exception:  # one reply's failure must not stop the others (logged)
            logger.exception("The sweep could not create the delivery of reply %s", message_id)
            continue
        handled += 1
    if message_ids:
        logger.warning(
            "%d queued repl(ies) with no delivery handed to the delivery engine by the sweep",
            handled,
        )
    return handled + _finished_replies_put_right(stale, stale_seconds)


def _finished_replies_put_right(before: datetime, stale_seconds: float) -> int:
    """Replies still ``queued`` whose delivery finished (succeeded or dead) before
    ``before``: the status update that runs with the engine's record failed (it is logged
    and undone alone, ``support.delivery.services._on_change_run``), so the reply would
    stay queued for ever with no channel id for its status webhooks. The engine runs the
    (idempotent) hook again from what it recorded; nothing is sent. At most
    ``REPLY_SWEEP_BATCH`` per run, taken only among those whose replay is due
    (``support.delivery.selectors.outcome_replay_due_q``), never replayed first: one whose
    update fails again waits longer after each replay and is given up after 5, for a
    supervisor (``support.delivery.services.deliveries_outcome_replay``), so replies whose
    update fails for ever no longer fill every run's batch ahead of newer ones (review of
    2026-12-07). Returns how many were put right."""
    due = delivery_selectors.outcome_replay_due_q(now=timezone.now(), stale_seconds=stale_seconds)
    finished = _reply_delivery().filter(due, completed_at__lt=before)
    last_replay = _reply_delivery().values("outcome_replay__attempted_at")[:1]
    message_ids = list(
        _queued_replies()
        .filter(Exists(finished))
        .annotate(replayed_at=Subquery(last_replay))
        .order_by(F("replayed_at").asc(nulls_first=True), "created_at", "pk")
        .values_list("pk", flat=True)[:REPLY_SWEEP_BATCH]
    )
    if not message_ids:
        return 0
    keys = [f"message:{pk}" for pk in message_ids]
    deliveries = dict(
        Delivery.objects.filter(
            target_kind=CHANNEL_REPLY_KIND, idempotency_key__in=keys
        ).values_list("idempotency_key", "pk")
    )
    handled = deliveries_outcome_replay(
        delivery_ids=[deliveries[key] for key in keys if key in deliveries],
        stale_seconds=stale_seconds,
        what="Reply status update",
    )
    logger.warning(
        "%d of %d queued repl(ies) whose delivery had finished put right by the sweep",
        handled,
        len(message_ids),
    )
    return handled


def _reply_fail(message_id: int, error: str, code: str) -> None:
    """Mark a queued reply the sweep cannot send ``failed`` with the reason (shown on the
    ticket page), so it leaves the sweep's queue instead of being tried every minute."""
    message = Message.objects.filter(pk=message_id).first()
    if message is not None:
        ticket_services.message_delivery_update(
            message=message, status=DeliveryState.FAILED, error=error, error_code=code[:64]
        )


def _reply_enqueue(
    message: Message, *, key: str, account: ChannelAccount, channel: str
) -> Delivery:
    """The ``channel_reply`` delivery of ``message`` through ``account`` on ``channel``."""
    return delivery_enqueue(
        kind=CHANNEL_REPLY_KIND,
        idempotency_key=key,
        target_key=f"{channel}:{account.pk}",
        subject_type="ticket",
        subject_id=message.ticket_id,
        payload={"message_id": message.pk, "account_id": account.pk, "channel": channel},
    )


#: ``error_code`` on the successful attempt of a reply the channel took without naming
#: its message id.
NO_MESSAGE_ID_CODE = "no_message_id"

#: ``error_code`` of a reply that is not sent because whom it is for can no longer be told
#: safely (docs/channels.md#replies-and-merges).
RECIPIENT_UNKNOWN_CODE = "recipient_unknown"
CUSTOMER_ERASED_CODE = "customer_erased"
NO_IDENTITY_CODE = "no_identity"


def _refusal(text: str, code: str) -> DeliveryError:
    return DeliveryError(text, outcome=Outcome.PERMANENT, error_code=code)


def reply_ticket_get(message: Message) -> Ticket:
    """The ticket whose customer a public reply goes to: the one it was written on
    (``tickets.selectors.message_written_on_ticket_get``), read when it is sent, not the
    one a merge has since put it on, which may be another customer's. Raises a permanent
    ``DeliveryError`` with a code (the reply is sent to no one) when whom it is for can no
    longer be told: that ticket is gone, or its customer was erased. A customer merge
    since is followed, as for any reply: it says the two records are one person."""
    ticket = message_written_on_ticket_get(message=message)
    if ticket is None:
        raise _refusal(
            "The ticket this reply was written on no longer exists, so whom it was for "
            "cannot be told; not sent.",
            RECIPIENT_UNKNOWN_CODE,
        )
    if customer_is_erased(customer_id=ticket.customer_id):
        raise _refusal(
            f"The customer of {ticket.number} was erased (their personal data removed at "
            "their request); not sent.",
            CUSTOMER_ERASED_CODE,
        )
    return ticket


def channel_recipient(ticket: Ticket, channel: str) -> str:
    """Whom a reply on ``ticket`` goes to on ``channel``, the ticket's own channel (one with
    an adapter): the web chat visitor, the sender's id on the channel, else an identity the
    customer has there, else (e-mail) the customer's address; "" when there is no one."""
    if channel == Channel.WEBCHAT:
        return selectors.webchat_reply_visitor(ticket)
    # The sender's id on the channel, for a ticket a channel account received; an API
    # caller's origin_platform_id is its own ticket id (seed 004) or a claim, never a
    # number or address to message: those tickets reply to an identity the customer
    # has on the channel (made by the channel's own messages, or by a supervisor).
    recipient = ticket.origin_platform_id if ticket.channel_account_id else ""
    if not recipient:
        identity = ChannelIdentity.objects.filter(customer=ticket.customer, channel=channel).first()
        recipient = identity.external_id if identity else ""
    if not recipient and channel == Channel.EMAIL:
        recipient = ticket.customer.email
    if recipient.startswith(NO_ADDRESS_PREFIX) and ticket.customer.email:
        # a mail that named no sender address; an agent has since given the customer one
        recipient = ticket.customer.email
    return recipient


def _outbound_request(
    message: Message, idempotency_key: str, channel: str | None = None
) -> OutboundRequest:
    """``channel``: the channel the reply goes out on, when not the message's own (a
    chatbot hand-off's replies go by e-mail to the customer's address). Whom it goes to,
    its subject and its e-mail thread come from the ticket it was written on
    (:func:`reply_ticket_get`, which refuses when that can no longer be told safely)."""
    ticket = reply_ticket_get(message)
    channel = channel or message.channel
    if channel != message.channel:  # by e-mail: a channel with no adapter of its own
        if message.channel == Channel.CHATBOT:
            recipient = handoff_reply_address(ticket)
        else:
            recipient = ticket.customer.email
    else:
        recipient = channel_recipient(ticket, channel)
    if not recipient:
        problem = f"The customer has no {channel} identity to reply to."
        if ticket.pk != message.ticket_id:
            problem += (
                f" This reply was written on {ticket.number} before it was merged into "
                f"{message.ticket.number}; a merge into another customer's ticket moves the "
                "identities. Not sent to anyone else."
            )
        raise _refusal(problem, NO_IDENTITY_CODE)
    thread: tuple[str, ...] = ()
    outgoing = ""
    if channel == "email":
        # a Message-ID too long for its column is stored shortened, the whole one beside it
        # (metadata "message_id"): a reply names the sender's own
        thread = tuple(
            str(whole or stored)
            for stored, whole in selectors.ticket_conversation(ticket)
            .filter(channel="email", kind=MessageKind.PUBLIC)
            .exclude(channel_message_id=None)
            .exclude(pk=message.pk)
            .order_by("created_at")
            .values_list("channel_message_id", "metadata__message_id")
        )
        domain = settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN
        outgoing = f"<reply-{message.pk}.{ticket.correlation_id}@{domain}>"
    fields: dict[str, Any] = {
        "message_id": message.pk,
        "ticket_id": ticket.pk,
        "ticket_number": ticket.number,
        "recipient_id": recipient,
        # a survey's feedback link is put in here, never stored (services.survey_link)
        "text": survey_text_with_link(message, ticket=ticket),
        "subject": ticket.subject,
        "last_inbound_at": selectors.last_inbound_at(ticket, channel),
        "thread_message_ids": thread,
        "outgoing_message_id": outgoing,
        "idempotency_key": idempotency_key,
        "files": outbound_files(message),
    }
    if channel == "email":
        # no author: the system wrote it (the survey), and it says so in its headers
        # (RFC 3834 Auto-Submitted), so the customer's auto-responder leaves it unanswered
        return EmailOutboundRequest(**fields, auto_generated=message.author_user_id is None)
    return OutboundRequest(**fields)


def _file_reader(attachment: Attachment) -> Callable[[], bytes]:
    """The stored bytes; a file no longer stored is a refusal in words (retrying cannot bring
    it back), a storage that fails for now (S3 throttled or unreachable) is retried as any
    AWS call is (``support.aws.aws_error``)."""

    def read() -> bytes:
        try:
            with attachment.file.open("rb") as stored:
                return bytes(stored.read())
        except FileNotFoundError as exc:
            raise PermanentError(
                f"The file “{attachment.filename}” of this reply is no longer stored; "
                "send the reply again with the file attached."
            ) from exc
        except (BotoCoreError, ClientError) as exc:
            raise aws_error(exc, context=f"Reading “{attachment.filename}”") from exc

    return read


def outbound_files(message: Message) -> tuple[OutboundFile, ...]:
    """The files of a reply, in the order attached: those stored (``read`` opens the file
    when the adapter calls it; ``public_url`` signs a short-lived S3 URL, "" off S3)."""
    return tuple(
        OutboundFile(
            attachment_id=attachment.pk,
            filename=attachment.filename,
            content_type=attachment.content_type or "application/octet-stream",
            size=attachment.size,
            kind=attachment.kind,
            read=_file_reader(attachment),
            public_url=partial(attachment_provider_url, attachment),
        )
        for attachment in message.attachments.exclude(file="").order_by("pk")
    )


def outbound_reply_send(delivery: Delivery) -> SendResult:
    """Send one reply through its channel's adapter (the engine calls this with no
    transaction open; the adapter raises ``RetryableError`` / ``PermanentError``)."""
    payload = delivery.payload
    message = (
        Message.objects.select_related("ticket__customer")
        .filter(pk=payload.get("message_id"))
        .first()
    )
    if message is None:
        raise PermanentError("The message was deleted before it could be sent.")
    account = ChannelAccount.objects.filter(pk=payload.get("account_id")).first()
    if account is None:
        raise PermanentError("The channel account was deleted.")
    channel = str(payload.get("channel") or message.channel)
    adapter = get_adapter(channel)
    outbound = _outbound_request(message, delivery.idempotency_key, channel)
    # checked when the agent sent it; again here (a reply queued before a limit changed, a
    # re-driven delivery): refused in words, never sent for the provider to refuse
    problems = reply_limits_problems(
        adapter.reply_limits_for(account),
        label=channel_label(channel),
        text=outbound.text,
        files=outbound.files,
    )
    if problems:
        raise PermanentError(" ".join(m for found in problems.values() for m in found))
    result = adapter.send(account, outbound)
    # Taken (2xx) is sent, whatever the answer says: an answer that names no message id
    # (not JSON, another shape) is a success with no channel id, said on the attempt, never
    # a failure retried into a second copy. Status webhooks cannot find such a reply.
    note = code = ""
    if not result.external_message_id:
        note = (
            f"{channel_label(channel)} took the reply (HTTP {result.http_status}), but its "
            "answer named no message id: sent, not sent again; its delivery statuses "
            "cannot be matched to it."
        )
        code = NO_MESSAGE_ID_CODE
    return SendResult(
        http_status=result.http_status,
        external_id=result.external_message_id,
        request_summary=result.request_body,
        response_summary=result.response_body,
        error=note,
        error_code=code,
        data={"delivered": result.delivered},
    )


def outbound_reply_changed(delivery: Delivery, change: DeliveryChange) -> None:
    """Keep the message's delivery status (the workbench timeline) in step."""
    message = Message.objects.filter(pk=delivery.payload.get("message_id")).first()
    if message is None:
        return
    if change.event == Change.SUCCEEDED:
        result = change.result
        delivered = bool(result and result.data.get("delivered"))
        state = DeliveryState.DELIVERED if delivered else DeliveryState.SENT
        try:
            with transaction.atomic():
                ticket_services.message_delivery_update(
                    message=message,
                    status=state,
                    channel_message_id=delivery.external_id or None,
                )
        except IntegrityError:
            # An echo of this very send was recorded first under the same channel id;
            # keep the status, never fail a request the channel already accepted.
            logger.warning(
                "Channel id %s already recorded (echo); message %s keeps none",
                delivery.external_id,
                message.pk,
            )
            ticket_services.message_delivery_update(message=message, status=state)
    elif change.event == Change.DEAD:
        error = change.error
        if change.gave_up:
            error = f"Gave up after {delivery.attempts} attempts: {error}"
        ticket_services.message_delivery_update(
            message=message,
            status=DeliveryState.FAILED,
            error=error,
            error_code=change.error_code,
        )
    elif change.event == Change.REDRIVEN:
        ticket_services.message_delivery_update(message=message, status=DeliveryState.QUEUED)


def _reply_schedule() -> Schedule:
    return Schedule(
        max_attempts=int(settings.CHANNELS_OUTBOUND_MAX_ATTEMPTS),
        base=float(settings.CHANNELS_OUTBOUND_BACKOFF_BASE),
        cap=float(settings.CHANNELS_OUTBOUND_BACKOFF_CAP),
    )


def _reply_deduplicates(delivery: Delivery) -> bool:
    channel = str(delivery.payload.get("channel", ""))
    return channel in registered_channels() and get_adapter(channel).deduplicates_sends


def _realtime_queue() -> str | None:
    return str(settings.REALTIME_QUEUE)


def channel_reply_target_kind() -> TargetKind:
    """Registered in ``ChannelsAppConfig.ready()``."""
    return TargetKind(
        name=CHANNEL_REPLY_KIND,
        label="Channel reply",
        send=outbound_reply_send,
        schedule=_reply_schedule,
        on_change=outbound_reply_changed,
        deduplicates=_reply_deduplicates,
        queue=_realtime_queue,
    )
