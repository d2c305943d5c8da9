"""python manage.py customer_export <id|email> [--output FILE]: everything as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from tickets.context import privacy
from tickets.context.commands import customer_from_ref, open_output


class Command(BaseCommand):
    help = "Export all data about a customer as JSON (audit-logged)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer", help="Customer id or email.")
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")

    def handle(self, *args: Any, **options: Any) -> None:
        customer = customer_from_ref(options["customer"])
        data = privacy.customer_export(customer=customer, actor=None, via="command")
        out = open_output(options["output"], self.stdout)  # type: ignore[arg-type]
        try:
            out.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))
            out.write("\n")
        finally:
            if out is not self.stdout:
                out.close()
