"""CSV imports of customers and orders: validate every row, then write all in one
transaction (PostgreSQL ``COPY`` into a temporary table, then one upsert), or nothing.

Customers are matched on email (case-insensitive) and updated; orders on their number.
A file with rejected rows writes nothing unless ``skip_invalid`` is set, in which case
only the valid rows are written. Either way the report lists every rejected row and why.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models.functions import Lower

from support.parsing import UnreadableJson, json_loads
from tickets.context.cache import context_invalidate_many
from tickets.context.models import Order
from tickets.context.services import OrderInput, order_fields_validate
from tickets.models import AccountType, Customer, VipTier

PHONE_RE = re.compile(r"^\+?[0-9 ()./-]{3,32}$")
CUSTOMER_COLUMNS = ("email", "name", "phone", "vip_tier", "account_type")
ORDER_COLUMNS = (
    "number",
    "customer_email",
    "status",
    "currency",
    "total",
    "refunded_amount",
    "placed_at",
    "items",
)
ORDER_REQUIRED = ("number", "customer_email", "status", "total", "placed_at")

# Called with a number of rows done: once per row validated, once per row written.
Progress = Callable[[int], None]


@dataclass
class Rejection:
    row: int  # 1-based data row (the header is row 0)
    errors: dict[str, list[str]]

    def text(self) -> str:
        parts = [f"{f}: {'; '.join(msgs)}" for f, msgs in self.errors.items()]
        return f"row {self.row}: " + " | ".join(parts)


@dataclass
class ImportReport:
    total: int = 0
    valid: int = 0
    created: int = 0
    updated: int = 0
    written: bool = False
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "valid": self.valid,
            "created": self.created,
            "updated": self.updated,
            "written": self.written,
            "rejected": [{"row": r.row, "errors": r.errors} for r in self.rejected],
        }


class ImportFileError(ValueError):
    """The file as a whole cannot be read (its header, its CSV syntax, its encoding):
    nothing is written."""


class HeaderError(ImportFileError):
    pass


class OwnerChanged(ImportFileError):
    """An order number was taken by another customer between validation and the write."""


def _reader(handle: TextIO, *, required: Iterable[str], known: Iterable[str]) -> csv.DictReader:
    reader = csv.DictReader(handle)
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise ImportFileError(f"CSV error after line {reader.line_num}: {exc}") from exc
    reader.fieldnames = header
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise HeaderError(f"repeated column(s): {', '.join(repeated)}")
    missing = [c for c in required if c not in header]
    if missing:
        raise HeaderError(f"missing column(s): {', '.join(missing)}")
    unknown = [c for c in header if c not in known]
    if unknown:
        raise HeaderError(f"unknown column(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return reader


def _rows(reader: csv.DictReader) -> Iterator[dict[str | None, Any]]:
    """The reader's rows; a CSV syntax error (a field over the size limit, an unclosed
    quote...) is the file's, reported with its line."""
    try:
        yield from reader
    except csv.Error as exc:
        raise ImportFileError(f"CSV error after line {reader.line_num}: {exc}") from exc


def _shape_errors(raw: dict[str | None, Any], width: int) -> dict[str, list[str]]:
    """Errors no single column check sees: values beyond the header (``DictReader``
    keeps them under ``None``: an unquoted comma shifts every later column) and NUL
    characters (PostgreSQL text cannot hold them)."""
    errors: dict[str, list[str]] = {}
    extra = raw.get(None)
    if extra:
        errors["row"] = [
            f"{width + len(extra)} values but the header has {width} columns "
            "(quote values that contain commas)."
        ]
    for key, value in raw.items():
        if key is not None and value and "\x00" in value:
            errors[key] = ["Contains a NUL character."]
    return errors


def _copy_rows(
    table: str,
    columns: Iterable[str],
    rows: Iterable[tuple[Any, ...]],
    progress: Progress | None = None,
) -> None:
    cols = ", ".join(columns)
    done = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor
        with raw.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
                done += 1
                if progress and done % 1000 == 0:
                    progress(1000)
    if progress:
        progress(done % 1000)


# --- customers ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerRow:
    email: str
    name: str
    phone: str
    vip_tier: str
    account_type: str


EMAIL_MAX = Customer._meta.get_field("email").max_length or 254


def _customer_row(
    raw: dict[str | None, Any], width: int = len(CUSTOMER_COLUMNS)
) -> tuple[CustomerRow | None, dict[str, list[str]]]:
    def get(key: str) -> str:
        return (raw.get(key) or "").strip()

    errors = _shape_errors(raw, width)
    email, name, phone = get("email").lower(), get("name"), get("phone")
    vip = get("vip_tier").lower() or VipTier.NONE
    account = get("account_type").lower() or AccountType.INDIVIDUAL
    if not email:
        errors["email"] = ["Required."]
    elif len(email) > EMAIL_MAX:
        errors["email"] = [f"At most {EMAIL_MAX} characters."]
    else:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = [f"Not a valid email address: {email!r}."]
    if len(name) > 200:
        errors["name"] = ["At most 200 characters."]
    if phone and not PHONE_RE.match(phone):
        errors["phone"] = [f"Not a phone number: {phone!r}."]
    if vip not in VipTier.values:
        errors["vip_tier"] = [f"Unknown tier {vip!r}; use one of {', '.join(VipTier.values)}."]
    if account not in AccountType.values:
        errors["account_type"] = [
            f"Unknown type {account!r}; use one of {', '.join(AccountType.values)}."
        ]
    if errors:
        return None, errors
    return CustomerRow(email, name, phone, vip, account), {}


def customers_import(
    handle: TextIO, *, skip_invalid: bool = False, progress: Progress | None = None
) -> ImportReport:
    report = ImportReport()
    reader = _reader(handle, required=("email",), known=CUSTOMER_COLUMNS)
    rows: list[CustomerRow] = []
    seen: dict[str, int] = {}
    width = len(reader.fieldnames or ())
    for number, raw in enumerate(_rows(reader), start=1):
        report.total += 1
        row, errors = _customer_row(raw, width)
        if row is not None and row.email in seen:
            errors = {"email": [f"Duplicate of row {seen[row.email]}."]}
            row = None
        if row is None:
            report.rejected.append(Rejection(number, errors))
        else:
            seen[row.email] = number
            rows.append(row)
        if progress and number % 1000 == 0:
            progress(1000)
    if progress:
        progress(report.total % 1000)
    report.valid = len(rows)
    if (report.rejected and not skip_invalid) or not rows:
        return report
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE import_customer "
                "(email text, name text, phone text, vip_tier text, account_type text) "
                "ON COMMIT DROP"
            )
        _copy_rows(
            "import_customer",
            CUSTOMER_COLUMNS,
            ((r.email, r.name, r.phone, r.vip_tier, r.account_type) for r in rows),
            progress,
        )
        table = Customer._meta.db_table
        with connection.cursor() as cursor:
            # xmax = 0 marks a freshly inserted row (vs. one updated by ON CONFLICT).
            cursor.execute(
                f"""
                INSERT INTO {table}
                    (email, name, phone, vip_tier, account_type, created_at, updated_at)
                SELECT email, name, phone, vip_tier, account_type, now(), now()
                FROM import_customer
                ON CONFLICT (lower(email)) WHERE NOT (email = '')
                DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone,
                    vip_tier = EXCLUDED.vip_tier, account_type = EXCLUDED.account_type,
                    updated_at = now()
                RETURNING (xmax = 0)
                """  # noqa: S608 - table name from model meta, values bound via COPY
            )
            inserted = [flag for (flag,) in cursor.fetchall()]
    report.created = sum(1 for flag in inserted if flag)
    report.updated = len(inserted) - report.created
    report.written = True
    return report


# --- orders ---------------------------------------------------------------------------


def _parse_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _parse_items(text: str) -> tuple[Any, str]:
    """The column's JSON (its shape is order_fields_validate's), or why it is not JSON."""
    if not text:
        return [], ""
    try:
        # json_loads: a deep ``[[[…]]]`` (RecursionError) and NaN or Infinity (which
        # jsonb refuses) reject the row instead of ending the import with a traceback.
        return json_loads(text, what="The cell"), ""
    except UnreadableJson as exc:
        return None, str(exc)


def _parse_amount(text: str) -> Decimal | None:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return None


def _order_row(
    raw: dict[str | None, Any], customers: dict[str, int], width: int = len(ORDER_COLUMNS)
) -> tuple[tuple[int, OrderInput] | None, dict[str, list[str]]]:
    def get(key: str) -> str:
        return (raw.get(key) or "").strip()

    errors = _shape_errors(raw, width)
    for name in ORDER_REQUIRED:
        if not get(name):
            errors[name] = ["Required."]
    email = get("customer_email").lower()
    customer_id = customers.get(email)
    if email and customer_id is None:
        errors["customer_email"] = [f"No customer with email {email!r}."]
    # Each amount's error under its own column (a bad refund used to be reported as
    # "total"); range and decimal places are order_fields_validate's, shared with order_upsert.
    total = _parse_amount(get("total"))
    refunded = _parse_amount(get("refunded_amount"))
    for name, value in (("total", total), ("refunded_amount", refunded)):
        if value is None and get(name):
            errors[name] = ["A decimal number such as 19.99."]
    placed_at = _parse_datetime(get("placed_at"))
    if get("placed_at") and placed_at is None:
        errors["placed_at"] = ["An ISO 8601 date-time such as 2026-01-31T10:00:00Z."]
    items, items_error = _parse_items(get("items"))
    if items_error:
        errors["items"] = [items_error]
    status = get("status").lower()
    currency = get("currency").upper() or "USD"

    def unless_reported(name: str, value: Any) -> Any:
        return None if name in errors else value

    # The shared checks run whatever failed above, on every column not reported yet: a
    # row names all its bad columns at once (one reason each).
    errors.update(
        order_fields_validate(
            number=unless_reported("number", get("number")),
            status=unless_reported("status", status),
            currency=unless_reported("currency", currency),
            total=unless_reported("total", total),
            refunded_amount=unless_reported("refunded_amount", refunded),
            placed_at=unless_reported("placed_at", placed_at),
            items=unless_reported("items", items),
        )
    )
    if errors:
        return None, errors
    assert placed_at is not None
    assert customer_id is not None
    assert total is not None
    assert refunded is not None
    data = OrderInput(
        number=get("number"),
        status=status,
        total=total,
        placed_at=placed_at,
        currency=currency,
        refunded_amount=refunded,
        items=items,
    )
    return (customer_id, data), {}


def _customer_ids(emails: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    batch = list(emails)
    for start in range(0, len(batch), 5000):
        chunk = batch[start : start + 5000]
        for email, pk in (
            Customer.objects.annotate(e=Lower("email")).filter(e__in=chunk).values_list("e", "id")
        ):
            found[email] = pk
    return found


def _owners(numbers: list[str]) -> dict[str, int]:
    owners: dict[str, int] = {}
    for start in range(0, len(numbers), 5000):
        chunk = numbers[start : start + 5000]
        owners.update(Order.objects.filter(number__in=chunk).values_list("number", "customer_id"))
    return owners


def orders_import(
    handle: TextIO, *, skip_invalid: bool = False, progress: Progress | None = None
) -> ImportReport:
    report = ImportReport()
    reader = _reader(handle, required=ORDER_REQUIRED, known=ORDER_COLUMNS)
    raws = list(_rows(reader))
    width = len(reader.fieldnames or ())
    # Looked up in two queries; a value with a NUL cannot be sent to PostgreSQL (its row
    # is rejected by _shape_errors).
    emails = {(r.get("customer_email") or "").strip().lower() for r in raws}
    numbers = [(r.get("number") or "").strip() for r in raws]
    customers = _customer_ids({e for e in emails if "\x00" not in e})
    owners = _owners([n for n in numbers if "\x00" not in n])
    rows: list[tuple[int, OrderInput]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(raws, start=1):
        report.total += 1
        parsed, errors = _order_row(raw, customers, width)
        if parsed is not None:
            customer_id, data = parsed
            if data.number in seen:
                errors, parsed = {"number": [f"Duplicate of row {seen[data.number]}."]}, None
            elif owners.get(data.number, customer_id) != customer_id:
                errors = {"number": [f"Order {data.number} belongs to another customer."]}
                parsed = None
        if parsed is None:
            report.rejected.append(Rejection(number, errors))
        else:
            seen[parsed[1].number] = number
            rows.append(parsed)
        if progress and number % 1000 == 0:
            progress(1000)
    if progress:
        progress(report.total % 1000)
    report.valid = len(rows)
    if (report.rejected and not skip_invalid) or not rows:
        return report
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE import_order (customer_id bigint, number text, status text, "
                "currency text, total numeric, refunded_amount numeric, items jsonb, "
                "placed_at timestamptz) ON COMMIT DROP"
            )
        _copy_rows(
            "import_order",
            (
                "customer_id",
                "number",
                "status",
                "currency",
                "total",
                "refunded_amount",
                "items",
                "placed_at",
            ),
            (
                (
                    cid,
                    d.number,
                    d.status,
                    d.currency,
                    d.total,
                    d.refunded_amount,
                    json.dumps(d.items or []),
                    d.placed_at,
                )
                for cid, d in rows
            ),
            progress,
        )
        table = Order._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (customer_id, number, status, currency, total,
                    refunded_amount, items, placed_at, created_at, updated_at)
                SELECT customer_id, number, status, currency, total, refunded_amount, items,
                    placed_at, now(), now()
                FROM import_order
                ON CONFLICT (number) DO UPDATE SET status = EXCLUDED.status,
                    currency = EXCLUDED.currency, total = EXCLUDED.total,
                    refunded_amount = EXCLUDED.refunded_amount, items = EXCLUDED.items,
                    placed_at = EXCLUDED.placed_at, updated_at = now()
                WHERE {table}.customer_id = EXCLUDED.customer_id
                RETURNING (xmax = 0)
                """  # noqa: S608 - table name from model meta, values bound via COPY
            )
            inserted = [flag for (flag,) in cursor.fetchall()]
        if len(inserted) < len(rows):
            # ON CONFLICT ... WHERE skipped a row: the number was taken by another
            # customer after validation. Roll back rather than import part of the file.
            raise OwnerChanged(
                f"{len(rows) - len(inserted)} order number(s) were taken by another "
                "customer during the import; nothing was written, run it again."
            )
        context_invalidate_many(cid for cid, _ in rows)
    report.created = sum(1 for flag in inserted if flag)
    report.updated = len(inserted) - report.created
    report.written = True
    return report


def rejected_rows_write(report: ImportReport, handle: TextIO) -> None:
    """The rejection report as CSV: row, field, error."""
    writer = csv.writer(handle)
    writer.writerow(["row", "field", "error"])
    for rejection in report.rejected:
        for name, messages in rejection.errors.items():
            for message in messages:
                writer.writerow([rejection.row, name, message])
