from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tickets.demo import load_demo


class Command(BaseCommand):
    help = "Load demo teams, users, customers and ~200 tickets (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--password", help="Password for the demo users (DEMO_PASSWORD).")

    def handle(self, *args: Any, **options: Any) -> None:
        load_demo(password=options.get("password"), progress=self.stdout.write)
