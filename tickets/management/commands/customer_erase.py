"""python manage.py customer_erase <id|email> --yes: erase a customer's personal data."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tickets.context import privacy
from tickets.context.commands import customer_from_ref


class Command(BaseCommand):
    help = "Erase a customer's personal data, keeping aggregates (irreversible; audit-logged)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer", help="Customer id or email.")
        parser.add_argument("--yes", action="store_true", help="Confirm: this cannot be undone.")

    def handle(self, *args: Any, **options: Any) -> None:
        customer = customer_from_ref(options["customer"])
        if not options["yes"]:
            raise CommandError("This cannot be undone: run again with --yes to erase.")
        try:
            counts = privacy.customer_erase(customer=customer, actor=None, via="command")
        except privacy.ErasureIncomplete as exc:
            raise CommandError(str(exc)) from exc
        details = ", ".join(f"{k}={v}" for k, v in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Customer {customer.pk} erased ({details})."))
