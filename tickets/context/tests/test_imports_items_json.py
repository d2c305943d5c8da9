"""An order's ``items`` cell is read as all JSON from outside is read
(``support.parsing.json_loads``). ``json.loads`` raised ``RecursionError`` for a deep
``[[[…]]]`` (the import_orders command ended with a traceback) and took ``NaN`` and
``Infinity``, which jsonb cannot store (the write failed). Now the row is rejected, with
the reason under ``items``."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tickets.context.imports import orders_import
from tickets.context.models import Order
from tickets.context.tests.test_imports import GOOD_AT, _orders_csv

pytestmark = pytest.mark.django_db

DEEP = "[" * 20_000 + "]" * 20_000


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (DEEP, "nested more than 100 levels deep"),
        ('[{"sku": "K1", "quantity": NaN}]', "NaN is not a JSON number"),
        ('[{"sku": "K1", "unit_price": -Infinity}]', "-Infinity is not a JSON number"),
        ("{", "Expecting property name"),  # as before
    ],
    ids=["deep", "nan", "infinity", "broken"],
)
def test_a_bad_items_cell_rejects_its_row(customer: Any, items: str, reason: str) -> None:
    rows = [
        ["O-1", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, items],
        ["O-2", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, '[{"sku": "K2"}]'],
    ]
    report = orders_import(io.StringIO(_orders_csv(rows)), skip_invalid=True)
    assert [r.row for r in report.rejected] == [1]
    [message] = report.rejected[0].errors["items"]
    assert reason in message
    assert list(Order.objects.values_list("number", flat=True)) == ["O-2"]


def test_the_import_orders_command_reports_a_deep_items_cell(tmp_path: Any, customer: Any) -> None:
    path = tmp_path / "orders.csv"
    rows = [["O-1", "ada@example.com", "paid", "USD", "10", "0", GOOD_AT, DEEP]]
    path.write_text(_orders_csv(rows))
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 rejected; nothing imported"):
        call_command("import_orders", str(path), "--no-progress", stdout=out, stderr=out)
    assert "row 1: items: The cell is nested more than 100 levels deep." in out.getvalue()
    assert not Order.objects.exists()
