"""Machine intake from outside systems (a shop, a CRM, ops tools): orders and interaction
events in batches, for ``POST /api/customers/orders`` and ``POST /api/customers/interactions``
(integration API keys only; ``tickets.context.api.views``).

A batch is one JSON object or a list of at most ``INTAKE_MAX_ITEMS``. Every item is read
and checked first, customers and order owners looked up in a few queries, and each error
is named by the item's index and field (``InvalidInput``, details ``{"items": [{"index",
"errors": {field: [reason]}}]}``); any error and nothing is written. Otherwise the batch
is written in one transaction through the context's own services (``order_upsert``,
``interactions_record_many``), as the CSV import (``tickets.context.imports``) does for
files. The rules of an order's fields are ``order_fields_validate``'s, shared with both.

Customers are named as ticket creation names them (``customer_id``,
``tickets.services.customer_id_is_external``): a JSON integer or a string of ASCII digits
is this platform's id, any other string but a number's the caller's own id
(``Customer.external_id``). No customer is created here: an unknown one is that item's
error. Integration keys are machine credentials trusted with every customer (as call
events are); no agent visibility rule applies to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from support.errors import InvalidInput
from support.parsing import contains_nul, parse_id
from support.services import audit_log_record
from tickets.context.models import CustomerErasure, InteractionKind, Order
from tickets.context.services import (
    SUMMARY_CHARS,
    InteractionInput,
    OrderInput,
    interactions_record_many,
    order_fields_validate,
    order_upsert,
)
from tickets.models import Channel, Customer
from tickets.services.customers import customer_external_id_problem, customer_id_is_external

logger = logging.getLogger(__name__)

INTAKE_MAX_ITEMS = 500
#: The caller's own id of an interaction (``id``): with the ``crm:<user id>:`` prefix it
#: fits ``Interaction.source_key`` (100 characters) whole, never cut.
INTERACTION_ID_MAX_CHARS = 64
#: The customer's own words, scored for sentiment and not stored.
INTERACTION_TEXT_MAX_CHARS = 5000
#: How far ahead of our clock a caller's may be (as for an order's ``placed_at``).
CLOCK_SKEW = timedelta(days=1)
SOURCE_KEY_PREFIX = "crm"

ORDER_FIELDS = frozenset(
    {
        "customer_id",
        "number",
        "status",
        "currency",
        "total",
        "refunded_amount",
        "items",
        "placed_at",
    }
)
ORDER_REQUIRED = ("customer_id", "number", "status", "total", "placed_at")
INTERACTION_FIELDS = frozenset(
    {"customer_id", "id", "occurred_at", "channel", "kind", "summary", "text"}
)
INTERACTION_REQUIRED = ("customer_id", "id", "occurred_at", "channel", "kind", "summary")
#: Fields an outside system may not set, and why (an entry with neither is shown to every
#: agent who may see the customer).
INTERACTION_REFUSED = {
    "ticket_id": "Not taken from outside systems: an entry of theirs names no ticket.",
    "scope": "Not taken from outside systems: an entry of theirs has no scope.",
}

ItemErrors = dict[str, list[str]]
Ref = int | str  # a customer as named: this platform's id or the caller's own


@dataclass(frozen=True)
class OrdersIntakeResult:
    created: int
    updated: int


@dataclass(frozen=True)
class InteractionsIntakeResult:
    recorded: int
    already_recorded: int


# --- the batch ------------------------------------------------------------------------


def intake_items(body: Any) -> list[Any]:
    """The items of a parsed body: one object, or a list of 1 to ``INTAKE_MAX_ITEMS``.
    A list's items are checked one by one (an item that is no object is its error)."""
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise InvalidInput(
            "The body must be a JSON object or a list of objects.",
            details={"body": ["A JSON object or a list of objects."]},
        )
    if not items:
        raise InvalidInput("The list is empty.", details={"body": ["Empty list."]})
    if len(items) > INTAKE_MAX_ITEMS:
        raise InvalidInput(
            f"{len(items)} items; send at most {INTAKE_MAX_ITEMS} per request.",
            details={"body": [f"At most {INTAKE_MAX_ITEMS} items."]},
        )
    return items


def _refuse(errors: dict[int, ItemErrors]) -> InvalidInput:
    """The batch's 400: every bad item by index, each bad field with its reasons."""
    indexes = sorted(errors)
    first = indexes[0]
    field, reasons = next(iter(errors[first].items()))
    more = f" ({len(indexes)} items have errors)" if len(indexes) > 1 else ""
    return InvalidInput(
        f"Item {first}: {field}: {' '.join(reasons)}{more}; nothing was written.",
        details={"items": [{"index": i, "errors": errors[i]} for i in indexes]},
    )


def _fields_check(
    raw: Any,
    *,
    known: frozenset[str],
    required: tuple[str, ...],
    refused: dict[str, str] | None = None,
) -> tuple[dict[str, Any], ItemErrors]:
    """The item as an object and its unknown (or refused) and missing fields' errors."""
    if not isinstance(raw, dict):
        return {}, {"item": ["A JSON object."]}
    errors: ItemErrors = {}
    for name in sorted(set(raw) - known):
        reason = (refused or {}).get(name, f"Unknown field; the fields are {sorted(known)}.")
        errors[name[:64]] = [reason]
    for name in required:
        if raw.get(name) is None:
            errors[name] = ["Required."]
    return raw, errors


# --- customers ------------------------------------------------------------------------


def _customer_ref(value: Any) -> tuple[Ref | None, str]:
    """``customer_id`` as sent: this platform's id (int), the caller's own (str), or why
    it is neither. Digits too long for an id name no customer (``0`` for none)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None, "This platform's customer id (a number) or your own (a string)."
    if isinstance(value, int):
        return parse_id(value) or 0, ""
    if not customer_id_is_external(value):  # a number as a string ("7"; "+7", "7.0": none)
        return parse_id(value.strip()) or 0, ""
    external_id = value.strip()
    problem = customer_external_id_problem(external_id)
    if problem is not None:
        return None, problem
    return external_id, ""


def _customers(refs: set[Ref]) -> dict[Ref, Customer]:
    """The customers named, by how they were named (two queries at most)."""
    pks = {ref for ref in refs if isinstance(ref, int) and ref}
    external_ids = {ref for ref in refs if isinstance(ref, str)}
    found: dict[Ref, Customer] = {}
    if pks:
        found.update(Customer.objects.in_bulk(pks))
    if external_ids:
        for customer in Customer.objects.filter(external_id__in=external_ids):
            found[customer.external_id] = customer
    return found


def _erased_refuse(customers: dict[int, Customer], errors: dict[int, ItemErrors]) -> None:
    """An item naming a customer whose data was erased is that item's ``customer_id``
    error: nothing more is recorded about them (orders and interactions alike)."""
    erased = set(
        CustomerErasure.objects.filter(
            customer_id__in={c.pk for c in customers.values()}
        ).values_list("customer_id", flat=True)
    )
    for index, customer in customers.items():
        if customer.pk in erased:
            errors.setdefault(index, {})["customer_id"] = [
                "This customer's data was erased: nothing more is recorded about them."
            ]


def _resolve_customers(refs: dict[int, Ref], errors: dict[int, ItemErrors]) -> dict[int, Customer]:
    """Each item's customer; an unknown one is the item's ``customer_id`` error."""
    customers = _customers(set(refs.values()))
    resolved: dict[int, Customer] = {}
    for index, ref in refs.items():
        customer = customers.get(ref)
        if customer is None:
            errors.setdefault(index, {})["customer_id"] = [
                f"Unknown customer {ref!r}: create it first (customers are not created here)."
            ]
        else:
            resolved[index] = customer
    return resolved


# --- values ---------------------------------------------------------------------------


def _datetime(value: Any) -> tuple[datetime | None, str]:
    if not isinstance(value, str):
        return None, "An ISO 8601 date-time string with an offset, e.g. 2026-01-31T10:00:00Z."
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None, f"Not an ISO 8601 date-time: {value[:40]!r} (e.g. 2026-01-31T10:00:00Z)."
    if timezone.is_naive(parsed):
        return None, "Needs a UTC offset (e.g. 2026-01-31T10:00:00Z or +02:00)."
    return parsed, ""


def _amount(value: Any) -> tuple[Decimal | None, str]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, "A decimal number such as 19.99 (a JSON number or a string)."
    try:
        return Decimal(str(value).strip()), ""
    except InvalidOperation:
        return None, "A decimal number such as 19.99."


def _text(value: Any, *, max_chars: int, required: bool = True) -> tuple[str, str]:
    if not isinstance(value, str):
        return "", "A string."
    if required and not value.strip():
        return "", "Required."
    if len(value) > max_chars:
        return "", f"At most {max_chars} characters ({len(value)} given); nothing is cut."
    if contains_nul(value):
        return "", "Contains a NUL character."
    return value, ""


# --- orders ---------------------------------------------------------------------------


def _order_read(raw: Any) -> tuple[Ref | None, OrderInput | None, ItemErrors]:
    """One item's customer and order, or its errors (every bad field at once)."""
    raw, errors = _fields_check(raw, known=ORDER_FIELDS, required=ORDER_REQUIRED)
    if "item" in errors:
        return None, None, errors
    ref, problem = _customer_ref(raw["customer_id"]) if "customer_id" not in errors else (None, "")
    if problem:
        errors["customer_id"] = [problem]

    def string(name: str, default: str = "") -> str | None:
        value = raw.get(name, default)
        if isinstance(value, int) and not isinstance(value, bool) and name == "number":
            value = str(value)  # a shop's numeric order number
        if not isinstance(value, str):
            errors.setdefault(name, ["A string."])
            return None
        return value.strip()

    number, status, currency = string("number"), string("status"), string("currency", "USD")
    status = status.lower() if status is not None else None
    currency = currency.upper() if currency is not None else None
    total, total_error = _amount(raw.get("total")) if "total" not in errors else (None, "")
    refunded, refund_error = _amount(raw.get("refunded_amount", 0))
    placed_at, placed_error = (
        _datetime(raw.get("placed_at")) if "placed_at" not in errors else (None, "")
    )
    for name, error in (
        ("total", total_error),
        ("refunded_amount", refund_error),
        ("placed_at", placed_error),
    ):
        if error:
            errors[name] = [error]
    items = raw.get("items", [])

    def unless_reported(name: str, value: Any) -> Any:
        return None if name in errors else value

    errors.update(
        order_fields_validate(
            number=unless_reported("number", number),
            status=unless_reported("status", status),
            currency=unless_reported("currency", currency),
            total=unless_reported("total", total),
            refunded_amount=unless_reported("refunded_amount", refunded),
            placed_at=unless_reported("placed_at", placed_at),
            items=unless_reported("items", items),
        )
    )
    if errors:
        return None, None, errors
    # every one of them was read, or an error about it was reported above
    assert number is not None
    assert status is not None
    assert currency is not None
    assert total is not None
    assert refunded is not None
    assert placed_at is not None
    data = OrderInput(
        number=number,
        status=status,
        total=total,
        placed_at=placed_at,
        currency=currency,
        refunded_amount=refunded,
        items=items,
    )
    return ref, data, {}


def orders_intake(*, body: Any, actor: Any, key_id: int | None = None) -> OrdersIntakeResult:
    """Create or update every order of ``body`` (upserted by number, as ``order_upsert``
    does), or none: ``InvalidInput`` naming each bad item by index and field. An order
    number another customer has is that item's error, as is a number twice in the batch.
    One audit-log entry says who sent how many, for which customers."""
    items = intake_items(body)
    errors: dict[int, ItemErrors] = {}
    refs: dict[int, Ref] = {}
    orders: dict[int, OrderInput] = {}
    first_of: dict[str, int] = {}
    for index, raw in enumerate(items):
        ref, data, item_errors = _order_read(raw)
        if data is not None and data.number in first_of:
            item_errors = {"number": [f"Also in item {first_of[data.number]}."]}
        if item_errors:
            errors[index] = item_errors
            continue
        assert ref is not None
        assert data is not None
        first_of[data.number] = index
        refs[index], orders[index] = ref, data
    customers = _resolve_customers(refs, errors)
    _erased_refuse(customers, errors)
    owners = dict(
        Order.objects.filter(number__in=list(first_of)).values_list("number", "customer_id")
    )
    for index, customer in customers.items():
        number = orders[index].number
        if owners.get(number, customer.pk) != customer.pk:
            errors.setdefault(index, {})["number"] = [
                f"Order {number} belongs to another customer."
            ]
    if errors:
        raise _refuse(errors)
    created = 0
    with transaction.atomic():
        for index, customer in customers.items():
            try:
                _, new = order_upsert(customer=customer, data=orders[index])
            except InvalidInput as exc:  # taken by another customer since the check
                raise _refuse({index: {k: list(v) for k, v in exc.details.items()}}) from None
            created += new
        result = OrdersIntakeResult(created=created, updated=len(customers) - created)
        _audit(
            actor,
            "customer_orders.intake",
            key_id,
            {
                "created": result.created,
                "updated": result.updated,
                "customer_ids": sorted({c.pk for c in customers.values()}),
            },
        )
    logger.info(
        "Orders intake (API key %s): %d created, %d updated",
        key_id,
        result.created,
        result.updated,
    )
    return result


# --- interactions ---------------------------------------------------------------------


@dataclass(frozen=True)
class _InteractionItem:
    ref: Ref
    item_id: str
    occurred_at: datetime
    channel: str
    kind: str
    summary: str
    text: str


def _interaction_read(raw: Any, *, now: datetime) -> tuple[_InteractionItem | None, ItemErrors]:
    raw, errors = _fields_check(
        raw, known=INTERACTION_FIELDS, required=INTERACTION_REQUIRED, refused=INTERACTION_REFUSED
    )
    if "item" in errors:
        return None, errors

    def check(name: str, outcome: tuple[Any, str]) -> Any:
        value, problem = outcome
        if problem and name not in errors:
            errors[name] = [problem]
        return value

    ref = check("customer_id", _customer_ref(raw.get("customer_id")))
    item_id = raw.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    item_id = check("id", _text(item_id, max_chars=INTERACTION_ID_MAX_CHARS))
    if item_id and not item_id.isprintable():
        errors.setdefault("id", ["Contains a control or other unprintable character."])
    occurred_at = check("occurred_at", _datetime(raw.get("occurred_at")))
    if occurred_at is not None and "occurred_at" not in errors:
        oldest = now - timedelta(days=settings.INTERACTIONS_RETENTION_DAYS)
        if occurred_at > now + CLOCK_SKEW:
            errors["occurred_at"] = ["In the future (more than a day ahead of our clock)."]
        elif occurred_at <= oldest:
            errors["occurred_at"] = [
                f"Older than the log keeps ({settings.INTERACTIONS_RETENTION_DAYS} days): "
                "it would expire at once."
            ]
    channel, kind = raw.get("channel"), raw.get("kind")
    if "channel" not in errors and channel not in Channel.values:
        errors["channel"] = [f"Unknown channel; use one of {Channel.values}."]
    if "kind" not in errors and kind not in InteractionKind.values:
        errors["kind"] = [f"Unknown kind; use one of {InteractionKind.values}."]
    summary = check("summary", _text(raw.get("summary"), max_chars=SUMMARY_CHARS))
    text = check(
        "text",
        _text(raw.get("text") or "", max_chars=INTERACTION_TEXT_MAX_CHARS, required=False),
    )
    if errors:
        return None, errors
    return _InteractionItem(ref, item_id, occurred_at, channel, kind, summary, text), {}


def interaction_source_key(*, caller_id: int, item_id: str) -> str:
    """The natural key of an outside system's entry: its own id, under the id of the user
    its key belongs to, so two callers' ids never meet, and a caller's new key (same
    service account) finds what the old one sent."""
    return f"{SOURCE_KEY_PREFIX}:{caller_id}:{item_id}"


def interactions_intake(
    *, body: Any, actor: Any, key_id: int | None = None
) -> InteractionsIntakeResult:
    """Log every interaction of ``body`` or none (``InvalidInput`` naming each bad item by
    index and field). Each is idempotent on its caller-chosen ``id``: sent again, it is
    counted as already recorded and nothing changes (the first values stay). Entries name
    no ticket and no scope: every agent who may see the customer sees them. ``text``, the
    customer's own words, is scored for sentiment (redacted first for an analyser that
    sends text away) and not stored. An erased customer is that item's error."""
    items = intake_items(body)
    caller_id = getattr(actor, "pk", None)
    if caller_id is None:
        raise InvalidInput("The caller has no user.", details={"body": ["No caller."]})
    now = timezone.now()
    errors: dict[int, ItemErrors] = {}
    read: dict[int, _InteractionItem] = {}
    first_of: dict[str, int] = {}
    for index, raw in enumerate(items):
        item, item_errors = _interaction_read(raw, now=now)
        if item is not None and item.item_id in first_of:
            item_errors = {"id": [f"Also in item {first_of[item.item_id]}."]}
        if item_errors:
            errors[index] = item_errors
            continue
        assert item is not None
        first_of[item.item_id] = index
        read[index] = item
    customers = _resolve_customers({i: item.ref for i, item in read.items()}, errors)
    _erased_refuse(customers, errors)
    if errors:
        raise _refuse(errors)
    inputs = [
        InteractionInput(
            customer_id=customer.pk,
            source_key=interaction_source_key(caller_id=caller_id, item_id=read[index].item_id),
            channel=read[index].channel,
            kind=read[index].kind,
            occurred_at=read[index].occurred_at,
            summary=read[index].summary,
            analyse_text=read[index].text,
        )
        for index, customer in customers.items()
    ]
    recorded, already = interactions_record_many(inputs)
    result = InteractionsIntakeResult(recorded=recorded, already_recorded=already)
    with transaction.atomic():
        _audit(
            actor,
            "customer_interactions.intake",
            key_id,
            {
                "recorded": recorded,
                "already_recorded": already,
                "customer_ids": sorted({c.pk for c in customers.values()}),
            },
        )
    logger.info(
        "Interactions intake (API key %s): %d recorded, %d already recorded",
        key_id,
        recorded,
        already,
    )
    return result


def _audit(actor: Any, action: str, key_id: int | None, details: dict[str, Any]) -> None:
    """Who sent what: the key's user, the key, counts and customer ids (no customer text)."""
    audit_log_record(
        actor=actor,
        action=action,
        object_type="support.ApiKey",
        object_id=key_id if key_id is not None else "",
        details=details,
    )
