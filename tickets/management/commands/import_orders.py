"""python manage.py import_orders FILE.csv [--skip-invalid] [--report rejected.csv]

Columns: number, customer_email, status, total, placed_at (required); currency,
refunded_amount, items (a JSON list).
"""

from __future__ import annotations

from tickets.context.commands import ImportCommand
from tickets.context.imports import orders_import


class Command(ImportCommand):
    help = "Import or update orders from CSV (all rows valid, or nothing is written)."
    importer = staticmethod(orders_import)
    noun = "orders"
