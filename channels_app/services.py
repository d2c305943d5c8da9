"""Intake and delivery: every write of the channels app goes through these functions.

Inbound: ``inbound_receive`` verifies, checks and records a delivery (the webhook view
answers at once); ``inbound_event_process`` (a task) normalises it and threads it into
tickets through ``tickets.services``. Outbound: ``outbound_delivery_create`` hands a public
reply to the delivery engine (``support.delivery``), which sends it with
``outbound_reply_send``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
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
from channels_app.adapters.email.auth import SenderAuth, sender_auth
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from support.db import ids_reserve, rows_insert
from support.delivery import selectors as delivery_selectors
from support.delivery.models import Delivery
from support.delivery.registry import (
    Change,
    DeliveryChange,
    Schedule,
    SendResult,
    TargetKind,
)
from support.delivery.services import delivery_enqueue
from support.errors import Conflict, InvalidInput, PermanentError, RetryableError
from support.events import outbox_rows, relay_after_commit
from support.redis_client import get_redis
from support.services import audit_log_record
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


SECRET_FIELDS = (
    "app_secret",
    "verify_token",
    "access_token",
    "consumer_secret",
    "inbound_token",
    "token_secret",
    "refresh_token",
    "client_secret",
)


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
    """One ``INSERT … ON CONFLICT DO NOTHING`` (its own commit outside a transaction):
    a redelivery hits the unique constraint and creates nothing."""
    now = timezone.now()
    event = InboundEvent(
        channel=account.channel,
        account=account,
        external_id=external_id,
        headers=headers,
        body=body,
        status=status,
        error=error,
        received_at=now,
        updated_at=now,
    )
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (channel, account_id, external_id, headers, body, "  # noqa: S608
            "received_at, status, attempts, error, processed_at, summary, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, NULL, '{}', %s) "
            "ON CONFLICT ON CONSTRAINT inbound_event_unique DO NOTHING RETURNING id",
            [
                account.channel,
                account.pk,
                external_id,
                json.dumps(headers),
                body,
                now,
                status,
                error,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        existing = InboundEvent.objects.get(
            channel=account.channel, account=account, external_id=external_id
        )
        return existing, False
    event.pk = row[0]
    if status == InboundStatus.RECEIVED:
        account_id = account.pk
        transaction.on_commit(lambda: inbound_drain_wake(account_id))
    return event, True


DRAIN_FLAG = "channels:inbound-drain:{account_id}"


def inbound_drain_wake(account_id: int) -> None:
    """Enqueue one drain task for the account unless one is already pending.

    A Redis ``SET NX`` flag (cleared when the drain starts) collapses a burst of deliveries
    into one task; the beat sweep re-enqueues anything left behind (e.g. Redis down).
    """
    from channels_app.tasks import inbound_events_drain_task

    try:
        if get_redis().set(DRAIN_FLAG.format(account_id=account_id), 1, nx=True, ex=5):
            inbound_events_drain_task.delay(account_id)
    except Exception:  # noqa: BLE001 - the delivery is stored; the sweep picks it up
        logger.warning("Could not enqueue the inbound drain; the sweep will process it")


def inbound_drain_flag_clear(*, account_id: int) -> None:
    try:
        get_redis().delete(DRAIN_FLAG.format(account_id=account_id))
    except Exception:  # noqa: BLE001
        logger.warning("Could not clear the inbound drain flag")


def _enqueue_process(event_id: int, countdown: float = 0) -> None:
    from channels_app.tasks import inbound_event_process_task

    inbound_event_process_task.apply_async((event_id,), countdown=countdown)


# --- inbound: process ---------------------------------------------------------------------


@dataclass
class ProcessOutcome:
    created_messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    unmatched_statuses: int = 0
    unknown: int = 0
    quarantined: int = 0  # e-mail under CHANNELS_EMAIL_AUTH_POLICY=reject
    quarantine_reasons: list[str] = field(default_factory=list)
    released_by: str = ""  # the supervisor who released a quarantined e-mail

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.__dict__)
        if not self.quarantined:
            del data["quarantined"], data["quarantine_reasons"]
        if not self.released_by:
            del data["released_by"]
        return data


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
        if event.status in DONE_STATUSES:
            return None
        outcome = _event_apply(event, event.account, _BatchCache())
        _events_mark_done([(event, outcome)])
    return outcome


DONE_STATUSES = (
    InboundStatus.PROCESSED,
    InboundStatus.IGNORED,
    InboundStatus.MALFORMED,
    InboundStatus.QUARANTINED,
)
DRAIN_BATCH = 100  # rows of a batch become visible together: small keeps latency low


@dataclass
class _BatchCache:
    """Look-ups reused within one transaction (one drain batch)."""

    customers: dict[str, Customer] = field(default_factory=dict)


def _event_apply(
    event: InboundEvent, account: ChannelAccount, cache: _BatchCache
) -> ProcessOutcome:
    """Apply one delivery's normalised items; raises ``RetryableError`` (to roll it back
    and retry later) when a status names a message not recorded yet."""
    attempts = event.attempts + 1
    adapter = get_adapter(event.channel)
    request = WebhookRequest(headers=event.headers, body=event.body_bytes)
    outcome = ProcessOutcome(released_by=str(event.summary.get("released_by") or ""))
    released = bool(outcome.released_by)
    for item in adapter.parse(account, request):
        if isinstance(item, InboundMessage):
            try:
                created = _message_ingest(adapter, account, item, cache, released=released)
            except EmailQuarantined as exc:  # raised before anything was written
                outcome.quarantined += 1
                outcome.quarantine_reasons += exc.reasons
                continue
            if created:
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
    return outcome


def _events_mark_done(done: list[tuple[InboundEvent, ProcessOutcome]]) -> None:
    """One UPDATE for the whole batch (rows joined to arrays: Django's ``bulk_update``
    builds a CASE per column and row, which cost half of a 100-delivery drain)."""
    if not done:
        return
    now = timezone.now()
    for event, outcome in done:
        applied = outcome.created_messages or outcome.duplicates or outcome.statuses
        if outcome.quarantined and not applied:
            event.status = InboundStatus.QUARANTINED
        elif outcome.unknown and not applied:
            event.status = InboundStatus.IGNORED
        else:
            event.status = InboundStatus.PROCESSED
        event.attempts += 1
        event.processed_at = now
        event.error = ""
        event.summary = outcome.as_dict()
        event.updated_at = now
    table = InboundEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS e SET status = v.status, attempts = e.attempts + 1, "  # noqa: S608
            "processed_at = %s, error = '', summary = v.summary, updated_at = %s "
            "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS status, "
            "unnest(%s::text[])::jsonb AS summary) AS v WHERE e.id = v.id",
            [
                now,
                now,
                [event.pk for event, _ in done],
                [event.status for event, _ in done],
                [json.dumps(event.summary) for event, _ in done],
            ],
        )


@dataclass
class DrainResult:
    taken: int
    retries: list[tuple[int, float]]  # (event id, delay): to retry alone, later


def inbound_events_drain(*, account_id: int, limit: int = DRAIN_BATCH) -> DrainResult:
    """Process up to ``limit`` received deliveries of one account in one transaction, in
    arrival order; returns how many were taken (0: nothing left) and which failed.

    One drainer per account at a time (a transaction-level advisory lock; a second one
    waits, then finds what is left), so messages of one conversation keep their order.
    Each delivery runs in its own savepoint: a failing one is rolled back alone, counted,
    and (unless dead) returned for ``inbound_event_process_task`` to retry with backoff.
    Exactly-once effects rest on the unique constraints, as in ``inbound_event_process``.
    """
    failed: list[tuple[int, str, Exception]] = []
    with transaction.atomic():
        _advisory_lock(f"inbound-drain:{account_id}")
        events = list(
            InboundEvent.objects.select_for_update(skip_locked=True)
            .filter(account_id=account_id, status=InboundStatus.RECEIVED)
            .order_by("id")[:limit]
        )
        if not events:
            return DrainResult(taken=0, retries=[])
        account = ChannelAccount.objects.get(pk=account_id)
        cache = _BatchCache()
        done: list[tuple[InboundEvent, ProcessOutcome]] = []

        def one_by_one(event: InboundEvent) -> None:
            try:
                with transaction.atomic():
                    done.append((event, _event_apply(event, account, cache)))
            except Exception as exc:  # noqa: BLE001 - retried alone by its own task
                logger.warning("Inbound event %s failed in a drain: %s", event.pk, exc)
                cache.customers.clear()  # may hold rows created in the rolled-back savepoint
                failed.append((event.pk, f"{type(exc).__name__}: {exc}", exc))

        # Runs of deliveries holding only plain messages are applied together (arrival
        # order kept: any other delivery ends the run and is applied alone, in its place).
        run: list[tuple[InboundEvent, list[InboundMessage]]] = []
        for event in [*events, None]:
            plain = _plain_messages(event, account) if event is not None else None
            if plain is not None and event is not None:
                run.append((event, plain))
                continue
            if run:
                _run_apply(run, account, cache, done, one_by_one)
                run = []
            if event is not None:
                one_by_one(event)
        _events_mark_done(done)
        retries: list[tuple[int, float]] = []
        for event_id, error, failure in failed:
            final, attempts = inbound_event_fail(
                event_id=event_id, error=error, permanent=isinstance(failure, PermanentError)
            )
            if not final:
                delay = inbound_retry_delay(attempts)
                if isinstance(failure, RetryableError) and failure.retry_after:
                    delay = max(delay, failure.retry_after)
                retries.append((event_id, delay))
    return DrainResult(taken=len(events), retries=retries)


def _plain_messages(event: InboundEvent, account: ChannelAccount) -> list[InboundMessage] | None:
    """The delivery's messages when every item is a plain message, else None."""
    try:
        items = list(
            get_adapter(event.channel).parse(
                account, WebhookRequest(headers=event.headers, body=event.body_bytes)
            )
        )
    except Exception:  # noqa: BLE001 - the one-by-one path records the failure
        return None
    if items and all(_message_is_plain(event.channel, item) for item in items):
        return [item for item in items if isinstance(item, InboundMessage)]
    return None


def _run_apply(
    run: list[tuple[InboundEvent, list[InboundMessage]]],
    account: ChannelAccount,
    cache: _BatchCache,
    done: list[tuple[InboundEvent, ProcessOutcome]],
    one_by_one: Any,
) -> None:
    """Apply a run of plain deliveries in one savepoint; on any failure, one by one."""
    try:
        with transaction.atomic():
            recorded = _messages_ingest_bulk(
                get_adapter(account.channel), account, [m for _, ms in run for m in ms], cache
            )
    except Exception as exc:  # noqa: BLE001 - each delivery then succeeds or fails alone
        logger.warning("A bulk drain run of %d failed (%s); one by one", len(run), exc)
        cache.customers.clear()
        for event, _ in run:
            one_by_one(event)
        return
    flags = iter(recorded)
    for event, messages in run:
        outcome = ProcessOutcome()
        for _ in messages:
            if next(flags):
                outcome.created_messages += 1
            else:
                outcome.duplicates += 1
        done.append((event, outcome))


def inbound_event_fail(*, event_id: int, error: str, permanent: bool = False) -> tuple[bool, int]:
    """Count a failed attempt; returns (final, attempts). Final (``dead``) when the error
    is permanent or ``CHANNELS_INBOUND_MAX_ATTEMPTS`` attempts were made."""
    max_attempts = int(settings.CHANNELS_INBOUND_MAX_ATTEMPTS)
    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.status == InboundStatus.PROCESSED:
            return True, 0
        attempts = event.attempts + 1
        final = permanent or attempts >= max_attempts
        InboundEvent.objects.filter(pk=event_id).update(
            status=InboundStatus.DEAD if final else InboundStatus.RETRYING,
            error=error[:5000],
            attempts=attempts,
        )
    return final, attempts


def inbound_retry_delay(attempts: int) -> float:
    return min(300.0, 2.0**attempts) * (0.8 + 0.4 * random.random())  # noqa: S311


def inbound_event_reprocess(*, event: InboundEvent) -> None:
    """Admin re-drive of a dead (or stuck) event."""
    InboundEvent.objects.filter(pk=event.pk).update(
        status=InboundStatus.RETRYING, attempts=0, error=""
    )
    transaction.on_commit(lambda: _enqueue_process(event.pk))


def inbound_event_release(*, event: InboundEvent, actor: Any) -> bool:
    """A supervisor releases a quarantined e-mail: it is processed as under policy
    ``mark`` (its message created, marked suspicious). False when it was not quarantined."""
    released = InboundEvent.objects.filter(pk=event.pk, status=InboundStatus.QUARANTINED).update(
        status=InboundStatus.RETRYING,
        attempts=0,
        error="",
        summary={**event.summary, "released_by": actor.get_username()},
    )
    if released:
        audit_log_record(
            actor=actor,
            action="inbound_event.release",
            object_type="channels_app.InboundEvent",
            object_id=event.pk,
            details={"channel": event.channel, "reasons": event.summary.get("quarantine_reasons")},
        )
        transaction.on_commit(lambda: _enqueue_process(event.pk))
    return bool(released)


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
    address = message.sender_email or message.sender_id
    who = message.sender_name.strip()
    name = f"{who} (unverified: {address})" if who else f"{address} (unverified)"
    customer, _ = ticket_services.customer_get_or_create(email="", name=name[:200])
    return customer


def _email_is_guest(customer: Customer) -> bool:
    return not customer.email and not ChannelIdentity.objects.filter(customer=customer).exists()


def _email_claimed_ticket(message: InboundMessage) -> tuple[Ticket | None, bool]:
    """The ticket the message says it belongs to, by In-Reply-To/References (Message-IDs we
    know), else by a ``[T-000123]`` token in the subject (merges followed); and whether
    only the token named it."""
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

        match = TICKET_TOKEN.search(message.subject)
        if match:
            ticket = Ticket.objects.filter(pk=parse_ticket_ref(match.group(1))).first()
            by_token = ticket is not None
    while ticket is not None and ticket.merged_into_id is not None:
        ticket = ticket.merged_into
    return ticket, by_token


def _email_thread(customer: Customer, message: InboundMessage) -> Ticket | None:
    """Policy ``off``: threading as before the sender checks (headers for anyone, the
    token only for the ticket's own customer)."""
    ticket, by_token = _email_claimed_ticket(message)
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


def _email_route(
    message: InboundMessage, cache: _BatchCache | None, *, released: bool = False
) -> tuple[Customer, Ticket | None, list[str]]:
    """The sender's customer, the ticket to append to (None: a new one) and why the
    message is suspicious ([] when it is not). Raises ``EmailQuarantined`` (policy
    ``reject``, not ``released``) before writing anything."""
    policy = _email_policy()
    if policy == "off":
        customer, _ = _customer_resolve("email", message, cache)
        return customer, _email_thread(customer, message), []
    quarantine = policy == "reject" and not released
    auth = _email_sender_auth(message)
    reasons = [] if auth.authenticated else [auth.summary]
    if reasons and quarantine:
        raise EmailQuarantined(reasons)
    claimed, _ = _email_claimed_ticket(message)
    owner: Customer | None = None
    if claimed is not None:
        if auth.authenticated:
            known = _email_known_customer(message, cache)
            if known is not None and known.pk == claimed.customer_id:
                owner = known
        elif (
            claimed.channel == "email"
            and claimed.origin_platform_id.lower() == message.sender_id.lower()
            and _email_is_guest(claimed.customer)
        ):
            owner = claimed.customer  # the unverified thread this sender started
        if owner is None:
            reasons.append(
                f"sender does not match the customer of {claimed.number}, which it replies to"
            )
            if quarantine:
                raise EmailQuarantined(reasons)
    if owner is None:
        customer, _ = _customer_resolve("email", message, cache)
        return customer, None, reasons
    ticket = claimed if claimed is not None and claimed.status != TicketStatus.CLOSED else None
    return owner, ticket, reasons


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
            _advisory_lock(f"{channel}:{account.pk}:{message.sender_id}")
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
            return True
    except Conflict:
        return False


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


_TOUCHED_TICKETS_UPDATE = """
UPDATE tickets_ticket AS t SET
    last_message_at = %s,
    updated_at = %s,
    waiting_since = COALESCE(t.waiting_since, %s),
    status = CASE WHEN t.status IN ('pending', 'resolved') THEN 'open' ELSE t.status END,
    resolved_at = CASE WHEN t.status IN ('pending', 'resolved') THEN NULL ELSE t.resolved_at END,
    search_vector =
        setweight(to_tsvector('english'::regconfig, t.subject), 'A')
        || setweight(to_tsvector('english'::regconfig, left(coalesce((
            SELECT string_agg(r.body_text, E'\\n' ORDER BY r.created_at DESC)
            FROM (
                SELECT m.body_text, m.created_at FROM tickets_message m
                WHERE m.ticket_id = t.id AND m.kind = 'public'
                ORDER BY m.created_at DESC LIMIT 20
            ) r
        ), ''), 20000)), 'B')
        || setweight(to_tsvector('simple'::regconfig, v.who), 'C')
FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS who) AS v
WHERE t.id = v.id
"""


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
    if tickets:  # lock what will change and read it again (events carry its current state)
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
    touched: dict[int, Customer] = {}
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
        else:
            touched[ticket.pk] = customer
            if ticket.status in (TicketStatus.PENDING, TicketStatus.RESOLVED):
                old_status = ticket.status
                ticket.status = TicketStatus.OPEN
                events.append(
                    ticket_services.ticket_new_event(
                        "ticket.updated", ticket, changes={"status": [old_status, "open"]}
                    )
                )
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
        events.append(ticket_services.message_new_event("message.created", message))
    rows_insert([*people, *new_rows, *message_rows, *outbox_rows(events)])
    if touched:
        who = [ticket_services.customer_search_text(c) for c in touched.values()]
        with connection.cursor() as cursor:
            cursor.execute(_TOUCHED_TICKETS_UPDATE, [now, now, now, list(touched), who])
    relay_after_commit()
    return recorded


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
    """Fetch a referenced attachment through its channel adapter and store it.

    Adapters download only from their channel's media hosts and stop past
    ``CHANNELS_MEDIA_MAX_BYTES`` (``adapters.base.media_download``); the size is checked
    again here so that no adapter can store more.
    """
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
    from channels_app.adapters.base import media_max_bytes

    if len(fetched.content) > media_max_bytes():
        raise PermanentError(
            f"Media larger than {media_max_bytes()} bytes (CHANNELS_MEDIA_MAX_BYTES)."
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
#
# A public reply is a ``support.delivery`` delivery of kind ``channel_reply`` (one per
# message: idempotency key ``message:<id>``; target ``<channel>:<account id>``, so a
# failing account pauses alone). The engine leases, retries, dead-letters and sweeps; this
# section says how to send one reply and keeps the message's delivery status in step.

CHANNEL_REPLY_KIND = "channel_reply"


def outbound_wanted(payload: dict[str, Any]) -> bool:
    """Whether a ``message.created`` event is a public reply we must deliver."""
    return (
        payload.get("direction") == Direction.OUTBOUND
        and payload.get("kind") == MessageKind.PUBLIC
        and payload.get("delivery_status") == DeliveryState.QUEUED
        and payload.get("channel") in registered_channels()
    )


def outbound_delivery_create(*, message_id: int) -> Delivery | None:
    """One delivery per queued public reply (idempotent); None when nothing to send."""
    message = Message.objects.select_related("ticket").filter(pk=message_id).first()
    if message is None or not (
        message.direction == Direction.OUTBOUND
        and message.kind == MessageKind.PUBLIC
        and message.channel in registered_channels()
    ):
        return None
    key = f"message:{message.pk}"
    existing = delivery_selectors.delivery_get(target_kind=CHANNEL_REPLY_KIND, idempotency_key=key)
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
    return delivery_enqueue(
        kind=CHANNEL_REPLY_KIND,
        idempotency_key=key,
        target_key=f"{message.channel}:{account.pk}",
        subject_type="ticket",
        subject_id=message.ticket_id,
        payload={"message_id": message.pk, "account_id": account.pk, "channel": message.channel},
    )


def _outbound_request(message: Message, idempotency_key: str) -> OutboundRequest:
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
        idempotency_key=idempotency_key,
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
    result = get_adapter(message.channel).send(
        account, _outbound_request(message, delivery.idempotency_key)
    )
    return SendResult(
        http_status=result.http_status,
        external_id=result.external_message_id,
        request_summary=result.request_body,
        response_summary=result.response_body,
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


INBOUND_SWEEP_STALE_SECONDS = 120.0


def inbound_event_sweep(*, stale_seconds: float = INBOUND_SWEEP_STALE_SECONDS) -> int:
    """Wake the drain of every account holding received events older than
    ``stale_seconds`` that were never processed (their wake was lost: the broker was down,
    a worker died mid-drain). The beat runs it every minute with the default; a worker
    runs it with 0 each time it (re)connects to the broker (``support.celery``). Waking a
    drain that is already running costs one task that finds nothing left."""
    stale = timezone.now() - timedelta(seconds=stale_seconds)
    account_ids = list(
        InboundEvent.objects.filter(status=InboundStatus.RECEIVED, received_at__lt=stale)
        .order_by()  # not the model's ordering: one row per account
        .values_list("account_id", flat=True)
        .distinct()
    )
    for account_id in account_ids:
        inbound_drain_wake(account_id)
    return len(account_ids)
