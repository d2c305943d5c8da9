"""python manage.py import_customers FILE.csv [--skip-invalid] [--report rejected.csv]

Columns: email (required, the match key), name, phone, vip_tier, account_type.
"""

from __future__ import annotations

from tickets.context.commands import ImportCommand
from tickets.context.imports import customers_import


class Command(ImportCommand):
    help = "Import or update customers from CSV (all rows valid, or nothing is written)."
    importer = staticmethod(customers_import)
    noun = "customers"
