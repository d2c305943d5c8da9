from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

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
        3: ["items", "placed_at", "total"],
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
