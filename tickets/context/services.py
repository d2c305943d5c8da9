"""Writes of the customer context: orders, interactions, CSAT feedback.

Every write that changes a customer's context invalidates its cache entry
(``tickets.context.cache.context_invalidate``). Data-protection export and erase live in
``tickets.context.privacy``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import import_module
from typing import Any

from celery import current_app
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from support.errors import Conflict, Forbidden, InvalidInput, NotFound
from support.events import event_record
from support.parsing import contains_nul
from support.services import audit_log_record
from support.sweeps import BROKER_ERRORS
from tickets.context.cache import context_invalidate
from tickets.context.interactions import InteractionRecord, get_backend
from tickets.context.models import (
    ContextDeadLetter,
    CsatFeedback,
    CustomerErasure,
    InteractionKind,
    Order,
    OrderStatus,
)
from tickets.context.sentiment import label_for_score, sentiment_analyse
from tickets.models import Customer, Direction, Message, MessageKind, Ticket, TicketStatus
from tickets.selectors import customer_is_erased
from tickets.services.customers import customer_stamps_renew

logger = logging.getLogger(__name__)

SUMMARY_CHARS = 280
FEEDBACK_SALT = "tickets.context.feedback"
FEEDBACK_STATUSES = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


# --- orders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderInput:
    number: str
    status: str
    total: Decimal
    placed_at: datetime
    currency: str = "USD"
    refunded_amount: Decimal = Decimal(0)
    items: list[dict[str, Any]] | None = None


AMOUNT_MAX = Decimal("1e10")  # Order.total / refunded_amount: 12 digits, 2 after the point
AMOUNT_STEP = Decimal("0.01")
PLACED_AT_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
PLACED_AT_SKEW = timedelta(days=1)  # a shop's clock a little ahead of ours


def amount_error(value: Decimal) -> str:
    """Why ``value`` is not an order amount ("" when it is): finite, 0 to
    9,999,999,999.99, at most 2 decimal places (more would be rounded by the column, and
    9,999,999,999.995 would overflow it)."""
    if not value.is_finite() or value < 0 or value >= AMOUNT_MAX:
        return "A number from 0 to 9,999,999,999.99."
    if value != value.quantize(AMOUNT_STEP):
        return f"At most 2 decimal places ({value} would be rounded)."
    return ""


def order_validate(data: OrderInput) -> dict[str, list[str]]:
    """Field errors of one order (empty when valid); shared with the CSV import."""
    return order_fields_validate(
        number=data.number,
        status=data.status,
        currency=data.currency,
        total=data.total,
        refunded_amount=data.refunded_amount,
        placed_at=data.placed_at,
        items=data.items or [],
    )


ITEMS_SHAPE = 'A JSON list of objects such as [{"sku": "A1", "quantity": 1}].'
NUL_ERROR = "Contains a NUL character."


def order_fields_validate(
    *,
    number: str | None,
    status: str | None,
    currency: str | None,
    total: Decimal | None,
    refunded_amount: Decimal | None,
    placed_at: datetime | None,
    items: object = None,
) -> dict[str, list[str]]:
    """Field errors of an order's values, every bad field at once. A value given as None
    is not checked: the CSV import passes None for a column it could not read (and has
    reported why), so the other columns of that row are still checked here."""
    errors: dict[str, list[str]] = {}
    if number is not None and (not number.strip() or len(number) > 64):
        errors["number"] = ["Required, at most 64 characters."]
    elif number is not None and contains_nul(number):  # PostgreSQL text cannot hold it
        errors["number"] = [NUL_ERROR]
    if status is not None and status not in OrderStatus.values:
        errors["status"] = [f"Unknown status {status!r}; use one of {OrderStatus.values}."]
    if currency is not None and (
        len(currency) != 3 or not currency.isalpha() or not currency.isupper()
    ):
        errors["currency"] = ["A 3-letter ISO 4217 code such as USD."]
    total_error = amount_error(total) if total is not None else ""
    if total_error:
        errors["total"] = [total_error]
    if refunded_amount is not None:
        refund_error = amount_error(refunded_amount)
        if refund_error:
            errors["refunded_amount"] = [refund_error]
        elif total is not None and not total_error and refunded_amount > total:
            errors["refunded_amount"] = ["Between 0 and the order total."]
    if placed_at is None:
        pass
    elif timezone.is_naive(placed_at):
        errors["placed_at"] = ["Needs a timezone (e.g. 2026-01-31T10:00:00Z)."]
    elif not PLACED_AT_EARLIEST <= placed_at <= timezone.now() + PLACED_AT_SKEW:
        errors["placed_at"] = ["Between 1970-01-01 and now (an order placed in the future?)."]
    if items is not None:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            errors["items"] = [ITEMS_SHAPE]
        elif contains_nul(items):
            errors["items"] = [NUL_ERROR]
    return errors


def order_errors_text(errors: dict[str, list[str]]) -> str:
    """``field: reason`` for every bad field, as ``InvalidInput`` messages name them."""
    return "; ".join(f"{field}: {' '.join(reasons)}" for field, reasons in errors.items())


@transaction.atomic
def order_upsert(*, customer: Customer, data: OrderInput) -> tuple[Order, bool]:
    """Create or update an order by its number; the customer's context shows it at once."""
    errors = order_validate(data)
    if errors:
        raise InvalidInput(order_errors_text(errors), details=errors)
    order, created = Order.objects.select_for_update().get_or_create(
        number=data.number.strip(),
        defaults={
            "customer": customer,
            "status": data.status,
            "currency": data.currency,
            "total": data.total,
            "refunded_amount": data.refunded_amount,
            "items": data.items or [],
            "placed_at": data.placed_at,
        },
    )
    if not created:
        if order.customer_id != customer.pk:
            raise InvalidInput(
                f"number: order {order.number} belongs to another customer.",
                details={"number": ["Belongs to another customer."]},
            )
        order.status = data.status
        order.currency = data.currency
        order.total = data.total
        order.refunded_amount = data.refunded_amount
        order.items = data.items or []
        order.placed_at = data.placed_at
        order.save()
    context_invalidate(customer.pk)
    return order, created


# --- interactions ---------------------------------------------------------------------


def _interaction_write(
    customer_id: int, build: Callable[[], InteractionRecord], *, replace: bool = False
) -> bool:
    """The one way an interaction is written: nothing for an erased customer (a task
    queued before the erasure runs after it; checked before ``build``, which may score
    sentiment with an outside service), then the backend (idempotent on the record's
    ``source_key``; ``replace``: the entry takes the new values), then the customer's
    cached context. Returns True when new."""
    if customer_is_erased(customer_id=customer_id):
        return False
    created = get_backend().record(build(), replace=replace)
    if created or replace:
        context_invalidate(customer_id)
    return created


def _scored(text: str, customer_id: int) -> dict[str, Any]:
    """The sentiment fields of a record for ``text`` (none for an empty text)."""
    sentiment = sentiment_analyse(text, customer_id=customer_id) if text.strip() else None
    return {
        "sentiment_score": sentiment.score if sentiment else None,
        "sentiment_label": sentiment.label if sentiment else "",
    }


def interaction_record(
    *,
    customer_id: int,
    source_key: str,
    channel: str,
    kind: str,
    occurred_at: datetime,
    summary: str = "",
    ticket_id: int | None = None,
    analyse_text: str = "",
    replace: bool = False,
    scope: str = "",
) -> bool:
    """Log an interaction from another app (e.g. a call with its transcript), idempotent on
    ``source_key``; ``analyse_text`` is scored for sentiment (only the customer's own
    words belong there). ``replace``: an entry with this ``source_key`` takes the new
    values (a call analysed again) instead of staying as it was. ``scope``
    (``<kind>:<key>``, ``tickets.context.scopes``): what else the entry is about whose own
    rule says who may see it (a call's page); agents are then shown it only if that rule,
    registered by the app owning ``<kind>``, lets them. Returns True when new."""
    if kind not in InteractionKind.values:
        raise InvalidInput(f"kind: unknown {kind!r}.", details={"kind": ["Invalid."]})
    return _interaction_write(
        customer_id,
        lambda: InteractionRecord(
            customer_id=customer_id,
            source_key=source_key,
            channel=channel,
            kind=kind,
            occurred_at=occurred_at,
            summary=summary[:SUMMARY_CHARS],
            ticket_id=ticket_id,
            scope=scope,
            **_scored(analyse_text, customer_id),
        ),
        replace=replace,
    )


@dataclass(frozen=True)
class InteractionInput:
    """One entry of ``interactions_record_many``: no ticket and no scope, so it is shown
    to every agent who may see the customer (docs/customer-context.md)."""

    customer_id: int
    source_key: str
    channel: str
    kind: str
    occurred_at: datetime
    summary: str = ""
    analyse_text: str = ""


def interactions_record_many(items: Sequence[InteractionInput]) -> tuple[int, int]:
    """Log many interactions at once (an outside system's batch), each idempotent on its
    ``source_key`` as ``interaction_record`` is; returns ``(recorded, already_recorded)``.

    Every text is scored first (``sentiment_analyse``: redacted for an analyser that sends
    text away), outside any transaction: the analyser may be an outside service, which no
    open transaction waits on. Then the entries are written in one transaction: with the
    PostgreSQL backend all or none; DynamoDB takes no part in it, so an error part-way
    leaves the entries before it, which the same batch sent again finds recorded. An
    erased customer's entries are not written (counted as already recorded: the caller
    checks for erasure first, this only covers an erasure meanwhile)."""
    erased = set(
        CustomerErasure.objects.filter(
            customer_id__in={item.customer_id for item in items}
        ).values_list("customer_id", flat=True)
    )
    records = [
        InteractionRecord(
            customer_id=item.customer_id,
            source_key=item.source_key,
            channel=item.channel,
            kind=item.kind,
            occurred_at=item.occurred_at,
            summary=item.summary[:SUMMARY_CHARS],
            **_scored(item.analyse_text, item.customer_id),
        )
        for item in items
        if item.customer_id not in erased
    ]
    with transaction.atomic():
        recorded = sum(_record_built(record) for record in records)
    return recorded, len(items) - recorded


def _record_built(record: InteractionRecord) -> bool:
    """``_interaction_write`` of a record already built (its sentiment already scored)."""
    return _interaction_write(record.customer_id, lambda: record)


def interaction_record_for_message(*, message_id: int) -> bool:
    """Log an inbound customer message with its sentiment (idempotent per message).

    Returns True when a new interaction was written.
    """
    message = (
        Message.objects.select_related("ticket")
        .filter(pk=message_id, direction=Direction.INBOUND, kind=MessageKind.PUBLIC)
        .first()
    )
    if message is None:
        return False
    customer_id = message.author_customer_id or message.ticket.customer_id
    text = message.body_text.strip()
    return _interaction_write(
        customer_id,
        lambda: InteractionRecord(
            customer_id=customer_id,
            source_key=f"message:{message.pk}",
            channel=message.channel,
            kind=InteractionKind.MESSAGE,
            occurred_at=message.created_at,
            summary=text[:SUMMARY_CHARS],
            ticket_id=message.ticket_id,
            **_scored(text, customer_id),
        ),
    )


def interaction_record_reopen(*, event_id: int, ticket_id: int, at: datetime) -> bool:
    """Log that a resolved ticket was reopened (one entry per ``ticket.updated`` event)."""
    ticket = Ticket.objects.filter(pk=ticket_id).only("id", "customer_id", "channel").first()
    if ticket is None:
        return False
    return _interaction_write(
        ticket.customer_id,
        lambda: InteractionRecord(
            customer_id=ticket.customer_id,
            source_key=f"reopen:{event_id}",
            channel=ticket.channel,
            kind=InteractionKind.TICKET_REOPENED,
            occurred_at=at,
            summary=f"{ticket.number} reopened",
            ticket_id=ticket.pk,
        ),
    )


PURGE_BATCH = 5000


def interaction_purge(*, now: datetime | None = None) -> int:
    """Delete expired interactions (PostgreSQL backend; DynamoDB expires items itself), in
    short transactions of ``PURGE_BATCH`` rows. Each batch renews the ``updated_at`` stamp
    of the customers it purged, in the same transaction: a context cached while the
    interaction was live is not served again (the stamp is how cached contexts are kept
    fresh across processes, local caches included). Returns how many were deleted."""
    now = now or timezone.now()
    backend = get_backend()
    total = 0
    while True:
        # No network call here: the DynamoDB backend's purge is a no-op (its TTL deletes).
        with transaction.atomic():
            batch = backend.purge_expired(now=now, limit=PURGE_BATCH)
            customer_stamps_renew(batch.customer_ids)
        total += batch.deleted
        if batch.deleted < PURGE_BATCH:
            return total


# --- CSAT feedback --------------------------------------------------------------------


def feedback_token_make(ticket: Ticket) -> str:
    return signing.dumps({"ticket": ticket.pk}, salt=FEEDBACK_SALT, compress=True)


def feedback_link_build(ticket: Ticket) -> str:
    """The signed link a channel sends after resolution (valid FEEDBACK_LINK_MAX_AGE_DAYS)."""
    return f"{settings.SITE_URL}/feedback/{feedback_token_make(ticket)}"


def feedback_token_ticket_id(token: str) -> int:
    """The ticket id a feedback token was made for; Forbidden when forged or expired."""
    try:
        data = signing.loads(
            token,
            salt=FEEDBACK_SALT,
            max_age=settings.FEEDBACK_LINK_MAX_AGE_DAYS * 86400,
        )
    except signing.SignatureExpired:
        raise Forbidden(
            "This feedback link has expired.", details={"token": ["Expired."]}
        ) from None
    except signing.BadSignature:
        raise Forbidden("Invalid feedback link.", details={"token": ["Invalid."]}) from None
    if not isinstance(data, dict) or not isinstance(data.get("ticket"), int):
        raise Forbidden("Invalid feedback link.", details={"token": ["Invalid."]})
    return int(data["ticket"])


MERGED_FEEDBACK_MESSAGE = (
    "This request was merged into another one of yours; we will ask about that one when "
    "it is resolved, so there is nothing to rate here."
)


def _feedback_status_check(ticket: Ticket) -> None:
    if ticket.merged_into_id is not None:
        # A merged ticket is a closed duplicate: its answer would count in CSAT beside the
        # ticket it became (docs/dashboard.md: merged tickets are left out everywhere).
        raise Conflict(MERGED_FEEDBACK_MESSAGE, details={"ticket": ["Merged."]})
    if ticket.status not in FEEDBACK_STATUSES:
        raise InvalidInput(
            f"status: feedback is for resolved or closed tickets; {ticket.number} is "
            f"{ticket.status}.",
            details={"status": ["Not resolved yet."]},
        )


def _feedback_unchanged(
    ticket_id: int, *, rating: int, comment: str, via_link: bool
) -> CsatFeedback | None:
    """The ticket's feedback when it already is exactly this answer, else None."""
    previous = CsatFeedback.objects.filter(ticket_id=ticket_id).first()
    if previous is not None and (previous.rating, previous.comment, previous.via_link) == (
        rating,
        comment,
        via_link,
    ):
        return previous
    return None


LINK_ANSWER_KEPT_MESSAGE = (
    "The customer rated this ticket through the feedback link; an agent cannot replace "
    "the customer's own answer."
)


def _link_answer_check(ticket_id: int, *, via_link: bool) -> None:
    """An agent's answer never replaces the customer's own (from the signed link): agents
    could otherwise rewrite the ratings their CSAT figures are made of."""
    if not via_link and CsatFeedback.objects.filter(ticket_id=ticket_id, via_link=True).exists():
        raise Conflict(LINK_ANSWER_KEPT_MESSAGE, details={"rating": ["Answered by the customer."]})


def feedback_submit(
    *,
    ticket: Ticket,
    rating: int,
    comment: str = "",
    via_link: bool = False,
    recorded_by: Any = None,
) -> tuple[CsatFeedback, bool]:
    """Record the customer's CSAT for a resolved or closed ticket; a new answer replaces
    the previous one, except that an agent's (``via_link`` false, ``recorded_by`` the
    agent) never replaces the customer's own from the signed link (``Conflict``); the
    customer's replaces anyone's. Returns ``(feedback, created)``. A ticket merged into another is
    refused (``Conflict``): the answer is not moved to the ticket it was merged into,
    which may be another customer's and is asked about on its own when resolved.

    The same answer again (a form sent twice, a replayed request) changes nothing: no
    new event or interaction. The answer and its ``csat.submitted`` event are one
    transaction; the interaction (with the comment's sentiment) is written from the event
    by ``interaction_record_for_csat``, in a task: the sentiment analyser and the
    interactions store may be outside services (Comprehend, DynamoDB), which neither hold
    the ticket's lock nor make the customer wait, and a failure there is retried rather
    than losing the answer."""
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput("rating: give a whole number from 1 to 5.", details={"rating": ["1–5."]})
    comment = comment.strip()[:5000]
    ticket = Ticket.objects.filter(pk=ticket.pk).first() or ticket  # as it is now
    _feedback_status_check(ticket)
    same = _feedback_unchanged(ticket.pk, rating=rating, comment=comment, via_link=via_link)
    if same is not None:
        return same, False
    _link_answer_check(ticket.pk, via_link=via_link)
    return _feedback_save(
        ticket=ticket,
        rating=rating,
        comment=comment,
        via_link=via_link,
        recorded_by=None if via_link else recorded_by,
    )


@transaction.atomic
def _feedback_save(
    *, ticket: Ticket, rating: int, comment: str, via_link: bool, recorded_by: Any
) -> tuple[CsatFeedback, bool]:
    ticket = Ticket.objects.select_for_update().filter(pk=ticket.pk).first() or ticket
    _feedback_status_check(ticket)  # again, under the lock
    same = _feedback_unchanged(ticket.pk, rating=rating, comment=comment, via_link=via_link)
    if same is not None:
        return same, False
    _link_answer_check(ticket.pk, via_link=via_link)  # again, under the lock
    feedback, created = CsatFeedback.objects.update_or_create(
        ticket=ticket,
        defaults={
            "customer_id": ticket.customer_id,
            "rating": rating,
            "comment": comment,
            "via_link": via_link,
            "recorded_by": recorded_by,
        },
    )
    event_record(
        "csat.submitted",
        aggregate_type="ticket",
        aggregate_id=ticket.pk,
        payload={
            "ticket_id": ticket.pk,
            "customer_id": ticket.customer_id,
            "rating": rating,
            "via_link": via_link,
            "submitted_at": feedback.updated_at.isoformat(),
        },
    )
    context_invalidate(ticket.customer_id)
    return feedback, created


def interaction_record_for_csat(*, ticket_id: int, submitted_at: datetime) -> bool:
    """Log a CSAT answer (from its ``csat.submitted`` event) with the comment's sentiment,
    redacted with the customer's names; without a comment the rating gives it. Idempotent
    on ``csat:<ticket>:<time of the answer>``. An answer replaced since is not logged (the
    newer answer's own event logs that one). Returns True when new."""
    feedback = (
        CsatFeedback.objects.select_related("ticket")
        .filter(ticket_id=ticket_id, updated_at=submitted_at)
        .first()
    )
    if feedback is None:
        return False
    ticket, rating, comment = feedback.ticket, feedback.rating, feedback.comment

    def build() -> InteractionRecord:
        score = (
            sentiment_analyse(comment, customer_id=ticket.customer_id).score
            if comment
            else (rating - 3) / 2
        )
        return InteractionRecord(
            customer_id=ticket.customer_id,
            source_key=f"csat:{ticket.pk}:{feedback.updated_at.timestamp():.6f}",
            channel=ticket.channel,
            kind=InteractionKind.FEEDBACK,
            occurred_at=feedback.updated_at,
            summary=f"CSAT {rating}/5" + (f": {comment}" if comment else ""),
            ticket_id=ticket.pk,
            sentiment_score=score,
            sentiment_label=label_for_score(score),
        )

    return _interaction_write(ticket.customer_id, build)


def ticket_for_feedback(*, ticket_id: int) -> Ticket:
    ticket = Ticket.objects.filter(pk=ticket_id).first()
    if ticket is None:
        raise NotFound(f"No ticket {ticket_id}.")
    if ticket.merged_into_id is not None:
        raise Conflict(MERGED_FEEDBACK_MESSAGE, details={"ticket": ["Merged."]})
    return ticket


# --- dead letters: background work that gave up -----------------------------------------


def context_dead_letter_record(
    *,
    kind: str,
    task: str,
    args: list[Any],
    error: str,
    ticket_id: int | None = None,
    customer_id: int | None = None,
) -> ContextDeadLetter:
    """Record that the work ``task(*args)`` gave up (its task's retries spent, an error it
    does not retry, a failed survey sweep try) with the reason, for a supervisor to see
    (admin: Customer-context dead letters; ``support_context_dead_letters``) and re-drive.
    Idempotent on ``task`` + ``args``: the same work giving up again counts one more
    failure and keeps the last error. ``ticket_id`` / ``customer_id`` say whose it is (the
    customer is the ticket's when not given)."""
    if customer_id is None and ticket_id is not None:
        customer_id = (
            Ticket.objects.filter(pk=ticket_id).values_list("customer_id", flat=True).first()
        )
    error = error[:2000]
    with transaction.atomic():
        row, created = ContextDeadLetter.objects.select_for_update().get_or_create(
            task=task,
            args=args,
            defaults={
                "kind": kind,
                "error": error,
                "ticket_id": ticket_id,
                "customer_id": customer_id,
            },
        )
        if not created:
            ContextDeadLetter.objects.filter(pk=row.pk).update(
                failures=F("failures") + 1, error=error, updated_at=timezone.now()
            )
            row.refresh_from_db()
    return row


def context_dead_letters_resolve(*, task: str, args: list[Any]) -> int:
    """The work ``task(*args)`` is done (or found nothing to do): its dead letter, if
    any, goes. Returns how many went (0 or 1)."""
    deleted, _ = ContextDeadLetter.objects.filter(task=task, args=args).delete()
    return deleted


def _dead_letter_audit(row: ContextDeadLetter, *, actor: Any, action: str) -> None:
    audit_log_record(
        actor=actor,
        action=f"context_dead_letter.{action}",
        object_type="context_dead_letter",
        object_id=row.pk,
        details={
            "kind": row.kind,
            "task": row.task,
            "args": row.args,
            "ticket_id": row.ticket_id,
            "customer_id": row.customer_id,
            "failures": row.failures,
            "error": row.error[:500],
        },
    )


def _dead_letters_locked(ids: Sequence[int]) -> list[ContextDeadLetter]:
    """These rows, locked for the open transaction (one a concurrent action holds is
    skipped: that action deals with it)."""
    return list(
        ContextDeadLetter.objects.select_for_update(skip_locked=True)
        .filter(pk__in=list(ids))
        .order_by("pk")
    )


def context_dead_letters_redrive(*, ids: Sequence[int], actor: Any) -> int:
    """A supervisor queues the work again (the admin action, once its cause is fixed):
    each row goes, audited (``context_dead_letter.redrive``), and its task is queued
    after the commit (idempotent: work found done returns). A re-drive that gives up again
    is recorded again by its task; one the broker refuses is recorded again at once.
    A row whose task this process does not know is left. Returns how many were queued."""
    queued: list[ContextDeadLetter] = []
    with transaction.atomic():
        rows = _dead_letters_locked(ids)
        for row in rows:
            if _dead_letter_task(row.task) is None:
                logger.warning("Dead letter %s: no task %s; left", row.pk, row.task)
                continue
            _dead_letter_audit(row, actor=actor, action="redrive")
            queued.append(row)
        ContextDeadLetter.objects.filter(pk__in=[row.pk for row in queued]).delete()
        transaction.on_commit(lambda: _dead_letters_queue(queued))
    return len(queued)


def _dead_letter_task(name: str) -> Any:
    """The registered Celery task ``name`` (its module imported first: a web process has
    not imported every app's tasks), None when there is none."""
    if name not in current_app.tasks:
        try:
            import_module(name.rpartition(".")[0])
        except ImportError:
            return None
    return current_app.tasks.get(name)


def _dead_letters_queue(rows: list[ContextDeadLetter]) -> None:
    for row in rows:
        try:
            _dead_letter_task(row.task).apply_async(args=row.args)
        except BROKER_ERRORS as exc:
            # not lost: it waits for the next re-drive, as before
            context_dead_letter_record(
                kind=row.kind,
                task=row.task,
                args=row.args,
                error=f"re-drive not queued: {type(exc).__name__}: {exc}",
                ticket_id=row.ticket_id,
                customer_id=row.customer_id,
            )


def context_dead_letters_discard(*, ids: Sequence[int], actor: Any) -> int:
    """A supervisor gives the work up for good (a survey now too late to be worth
    sending): each row goes, audited (``context_dead_letter.discard``). Returns how many."""
    with transaction.atomic():
        rows = _dead_letters_locked(ids)
        for row in rows:
            _dead_letter_audit(row, actor=actor, action="discard")
        ContextDeadLetter.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return len(rows)
