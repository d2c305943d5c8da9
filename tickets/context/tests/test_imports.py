from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tickets.context.cache import context_cache_key
from tickets.context.imports import HeaderError, customers_import, orders_import
from tickets.context.models import Order
from tickets.context.selectors import customer_context_get
from tickets.models import Customer

pytestmark = pytest.mark.django_db

GOOD = """email,name,phone,vip_tier,account_type
ada@example.com,Ada King,+44 20 1234,gold,business
bob@example.com,Bob,,,
"""
BAD = """email,name,phone,vip_tier,account_type
carol@example.com,Carol,,silver,
not-an-email,Dan,,,
,Eve,,,
erin@example.com,Erin,call me maybe,diamond,
CAROL@example.com,Carol again,,,
"""


def test_customers_import_creates_and_updates_by_email(customer):
    report = customers_import(io.StringIO(GOOD))
    assert (report.total, report.valid, report.created, report.updated) == (2, 2, 1, 1)
    assert report.rejected == []
    customer.refresh_from_db()
    assert (customer.name, customer.phone, customer.vip_tier, customer.account_type) == (
        "Ada King",
        "+44 20 1234",
        "gold",
        "business",
    )
    bob = Customer.objects.get(email="bob@example.com")
    assert (bob.vip_tier, bob.account_type) == ("none", "individual")


def test_customers_import_with_bad_rows_writes_nothing_and_reports_why():
    report = customers_import(io.StringIO(BAD))
    assert report.written is False
    assert Customer.objects.count() == 0
    assert [(r.row, r.errors) for r in report.rejected] == [
        (2, {"email": ["Not a valid email address: 'not-an-email'."]}),
        (3, {"email": ["Required."]}),
        (
            4,
            {
                "phone": ["Not a phone number: 'call me maybe'."],
                "vip_tier": ["Unknown tier 'diamond'; use one of none, silver, gold, platinum."],
            },
        ),
        (5, {"email": ["Duplicate of row 1."]}),
    ]


def test_customers_import_skip_invalid_writes_only_valid_rows():
    report = customers_import(io.StringIO(BAD), skip_invalid=True)
    assert (report.written, report.created, len(report.rejected)) == (True, 1, 4)
    assert list(Customer.objects.values_list("email", flat=True)) == ["carol@example.com"]


def test_customers_import_rejects_unknown_columns():
    with pytest.raises(HeaderError):
        customers_import(io.StringIO("email,shoe_size\na@example.com,42\n"))


def test_import_customers_command_reports_and_fails(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(BAD)
    report_path = tmp_path / "rejected.csv"
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing imported"):
        call_command(
            "import_customers",
            str(path),
            "--no-progress",
            "--report",
            str(report_path),
            stderr=err,
        )
    assert "row 2: email: Not a valid email address" in err.getvalue()
    rows = list(csv.reader(report_path.open()))
    assert rows[0] == ["row", "field", "error"]
    assert len(rows) == 1 + 5
    assert Customer.objects.count() == 0
    path.write_text(GOOD)
    out, bar = io.StringIO(), io.StringIO()
    call_command("import_customers", str(path), stdout=out, stderr=bar)
    assert "2 customers read, 2 valid, 0 rejected; 2 created, 0 updated." in out.getvalue()


def test_import_progress_counts_validation_and_writing():
    seen: list[int] = []
    customers_import(io.StringIO(GOOD), progress=seen.append)
    assert sum(seen) == 4  # 2 rows validated + 2 rows written


def _orders_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "number",
            "customer_email",
            "status",
            "currency",
            "total",
            "refunded_amount",
            "placed_at",
            "items",
        ]
    )
    writer.writerows(rows)
    return out.getvalue()


def test_orders_import_validates_then_writes_and_invalidates_context(
    customer, django_capture_on_commit_callbacks
):
    customer_context_get(customer)
    assert cache.get(context_cache_key(customer.pk)) is not None
    items = json.dumps([{"sku": "K1", "name": "Kettle", "quantity": 1, "unit_price": "20.00"}])
    bad = _orders_csv(
        [
            [
                "O-1",
                "ADA@example.com",
                "delivered",
                "USD",
                "20.00",
                "0",
                "2026-11-01T10:00:00Z",
                items,
            ],
            ["O-2", "nobody@example.com", "paid", "USD", "5", "0", "2026-11-01T10:00:00Z", ""],
            ["O-3", "ada@example.com", "lost", "usd", "x", "0", "yesterday", "{"],
            ["O-1", "ada@example.com", "paid", "EUR", "1", "0", "2026-11-01T10:00:00Z", ""],
            ["O-4", "ada@example.com", "refunded", "EUR", "10", "11", "2026-11-01T10:00:00", ""],
        ]
    )
    report = orders_import(io.StringIO(bad))
    assert report.written is False
    assert Order.objects.count() == 0
    assert {r.row: sorted(r.errors) for r in report.rejected} == {
        2: ["customer_email"],
        3: ["items", "placed_at", "status", "total"],
        4: ["number"],
        5: ["placed_at", "refunded_amount"],
    }
    good = _orders_csv(
        [
            [
                "O-1",
                "ada@example.com",
                "delivered",
                "USD",
                "20.00",
                "0",
                "2026-11-01T10:00:00Z",
                items,
            ]
        ]
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = orders_import(io.StringIO(good))
    assert (report.written, report.created) == (True, 1)
    order = Order.objects.get()
    assert (order.customer_id, order.items[0]["sku"], str(order.total)) == (
        customer.pk,
        "K1",
        "20.00",
    )
    # Imported orders show in the context at once.
    assert cache.get(context_cache_key(customer.pk)) is None
    assert customer_context_get(customer)["orders"]["count"] == 1


# --- bad rows give a per-row error naming the field, never a crash (review ctxfix) -------

GOOD_AT = "2026-11-01T10:00:00Z"


def test_order_amount_errors_name_their_own_field_and_extra_places_are_rejected(customer):
    """Before: a bad refund was reported under ``total``; 19.999 was silently stored as
    20.00; 9999999999.999 passed validation and crashed the write (numeric overflow)."""
    rows = [
        ["O-1", "ada@example.com", "paid", "USD", "10", "1,5", GOOD_AT, ""],
        ["O-2", "ada@example.com", "paid", "KWD", "19.999", "0", GOOD_AT, ""],
        ["O-3", "ada@example.com", "paid", "USD", "9999999999.999", "0", GOOD_AT, ""],
        ["O-4", "ada@example.com", "paid", "USD", "10", "0.001", GOOD_AT, ""],
        ["O-5", "ada@example.com", "paid", "USD", "NaN", "0", GOOD_AT, ""],
        ["O-6", "ada@example.com", "paid", "USD", "10.50", "0.5", GOOD_AT, ""],
    ]
    report = orders_import(io.StringIO(_orders_csv(rows)), skip_invalid=True)
    assert {r.row: r.errors for r in report.rejected} == {
        1: {"refunded_amount": ["A decimal number such as 19.99."]},
        2: {"total": ["At most 2 decimal places (19.999 would be rounded)."]},
        3: {"total": ["At most 2 decimal places (9999999999.999 would be rounded)."]},
        4: {"refunded_amount": ["At most 2 decimal places (0.001 would be rounded)."]},
        5: {"total": ["A number from 0 to 9,999,999,999.99."]},
    }
    assert list(Order.objects.values_list("number", "total", "refunded_amount")) == [
        ("O-6", Decimal("10.50"), Decimal("0.50"))
    ]


def test_a_row_reports_every_bad_column_not_only_its_unreadable_amount_or_date(customer):
    """Before: a row whose amount or date could not be read reported only that (the
    shared checks of status, currency and the other fields were skipped), so a fixed file
    was rejected again for the next column."""
    rows = [
        ["O-1", "ada@example.com", "lost", "US", "abc", "0", GOOD_AT, ""],
        ["O-2", "ada@example.com", "lost", "EURO", "10", "0", "yesterday", ""],
        ["", "ada@example.com", "paid", "USD", "10", "x", GOOD_AT, "{"],
        ["O-4", "ada@example.com", "", "USD", "", "0", GOOD_AT, ""],
    ]
    report = orders_import(io.StringIO(_orders_csv(rows)), skip_invalid=True)
    unknown = "Unknown status 'lost'; use one of"
    iso = "A 3-letter ISO 4217 code such as USD."
    assert {r.row: sorted(r.errors) for r in report.rejected} == {
        1: ["currency", "status", "total"],
        2: ["currency", "placed_at", "status"],
        3: ["items", "number", "refunded_amount"],
        4: ["status", "total"],
    }
    errors = {r.row: r.errors for r in report.rejected}
    assert errors[1]["total"] == ["A decimal number such as 19.99."]
    assert errors[1]["status"][0].startswith(unknown)
    assert errors[1]["currency"] == [iso]
    assert errors[2]["placed_at"] == ["An ISO 8601 date-time such as 2026-01-31T10:00:00Z."]
    assert errors[4] == {"status": ["Required."], "total": ["Required."]}  # one reason each
    assert not Order.objects.exists()


def test_order_upsert_names_every_bad_field(customer):
    from support.errors import InvalidInput
    from tickets.context.services import OrderInput, order_upsert

    data = OrderInput(
        number="A-1",
        status="lost",
        currency="usd",
        total=Decimal("NaN"),
        placed_at=timezone.now(),
    )
    with pytest.raises(InvalidInput) as caught:
        order_upsert(customer=customer, data=data)
    assert sorted(caught.value.details) == ["currency", "status", "total"]
    message = str(caught.value)
    assert all(f"{field}:" in message for field in ("currency", "status", "total"))
    assert not Order.objects.exists()


def test_order_upsert_checks_what_the_import_checks_items_and_nul_characters(customer):
    """Before: order_upsert stored items that were not a list of objects (the import
    refuses them), and a NUL character in the number or the items crashed the write (a
    500 for an integrator) where the import reports it."""
    from support.errors import InvalidInput
    from tickets.context.services import OrderInput, order_upsert

    now = timezone.now()
    bad_items: list[Any] = [{"sku": "K1"}, ["K1"], [{"sku": "K\x00"}]]
    cases = {
        "items": [
            OrderInput(number="A-1", status="paid", total=Decimal(5), placed_at=now, items=bad)
            for bad in bad_items
        ],
        "number": [OrderInput(number="A\x001", status="paid", total=Decimal(5), placed_at=now)],
    }
    for field, inputs in cases.items():
        for data in inputs:
            with pytest.raises(InvalidInput) as caught:
                order_upsert(customer=customer, data=data)
            assert list(caught.value.details) == [field]
    assert not Order.objects.exists()


def test_order_upsert_answers_invalid_input_for_any_bad_amount_or_date(customer):
    """Before: a NaN amount raised ``decimal.InvalidOperation`` (a 500 for an integrator)
    and a placed_at before year 1 in UTC crashed the write."""
    from support.errors import InvalidInput
    from tickets.context.services import OrderInput, order_upsert

    now = timezone.now()
    cases = {
        "total": OrderInput(number="A-1", status="paid", total=Decimal("NaN"), placed_at=now),
        "refunded_amount": OrderInput(
            number="A-2",
            status="paid",
            total=Decimal(5),
            refunded_amount=Decimal("sNaN"),
            placed_at=now,
        ),
        "placed_at": OrderInput(
            number="A-3",
            status="paid",
            total=Decimal(5),
            placed_at=datetime(1, 1, 1, tzinfo=dt_timezone(timedelta(hours=1))),
        ),
    }
    for field, data in cases.items():
        with pytest.raises(InvalidInput) as caught:
            order_upsert(customer=customer, data=data)
        assert list(caught.value.details) == [field]
    future = OrderInput(
        number="A-4", status="paid", total=Decimal(5), placed_at=now + timedelta(days=2)
    )
    with pytest.raises(InvalidInput):
        order_upsert(customer=customer, data=future)
    assert not Order.objects.exists()


def test_rows_with_values_beyond_the_header_or_nul_characters_are_rejected(customer):
    """Before: an unquoted comma's extra value was dropped and the row imported; a NUL
    character crashed the write (PostgreSQL text cannot hold it)."""
    text = _orders_csv(
        [
            ["O-1", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, "", "stray"],
            ["O-2\x00", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, ""],
        ]
    )
    report = orders_import(io.StringIO(text))
    assert {r.row: r.errors for r in report.rejected} == {
        1: {"row": ["9 values but the header has 8 columns (quote values that contain commas)."]},
        2: {"number": ["Contains a NUL character."]},
    }
    assert report.written is False
    customers = customers_import(io.StringIO("email,name\nzed@example.com,Zed,Jones\n"))
    assert [r.errors for r in customers.rejected] == [
        {"row": ["3 values but the header has 2 columns (quote values that contain commas)."]}
    ]


def test_customers_import_rejects_an_email_longer_than_the_column():
    """Before: a 312-character address passed ``validate_email`` and crashed the write."""
    email = "a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com"
    report = customers_import(io.StringIO(f"email\n{email}\n"))
    assert [r.errors for r in report.rejected] == [{"email": ["At most 254 characters."]}]
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"number,customer_email,status,total,placed_at,total\n",
            "repeated column(s): total",
        ),
        (
            (
                "number,customer_email,status,total,placed_at,items\n"
                f'O-1,ada@example.com,paid,1,{GOOD_AT},"[{{""sku"": ""{"x" * 140000}""}}]"\n'
            ).encode(),
            "CSV error after line 1: field larger than field limit",
        ),
        (
            f"number,customer_email,status,total,placed_at\nO-\xe9,a@b.c,paid,1,{GOOD_AT}\n".encode(
                "latin-1"
            ),
            "not UTF-8 text",
        ),
    ],
)
def test_import_orders_command_reports_an_unreadable_file(tmp_path, customer, content, message):
    """Before: a repeated column was silently read as its last copy; a huge field and a
    non-UTF-8 file ended the command with a traceback."""
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("import_orders", str(path), "--no-progress")
    assert not Order.objects.exists()


def test_orders_import_writes_nothing_when_a_number_changes_owner_meanwhile(customer, monkeypatch):
    """The upsert skips a row whose number belongs to another customer; when that owner
    appeared after validation, the import rolled back instead of writing the rest and
    saying nothing (before: written, 1 created, the other row silently missing)."""
    from tickets.context import imports

    other = Customer.objects.create(email="other@example.com")
    Order.objects.create(
        customer=other, number="O-1", status="paid", total=1, placed_at=timezone.now()
    )
    monkeypatch.setattr(imports, "_owners", lambda numbers: {})  # validated before it existed
    text = _orders_csv(
        [
            ["O-1", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, ""],
            ["O-2", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, ""],
        ]
    )
    with pytest.raises(imports.OwnerChanged):
        orders_import(io.StringIO(text))
    assert list(Order.objects.values_list("number", "customer_id")) == [("O-1", other.pk)]
