"""Create an API key from the command line (the admin's "Add API key" does the same).

    python manage.py api_key_create --user svc-connect --name connect-forwarder \
        --role integration

The raw key is printed once on stdout and never shown again (only its hash is stored).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from support.models import ApiKeyRole
from support.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key (user or integration role); prints the key once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="Username the key belongs to.")
        parser.add_argument("--name", required=True, help="A label, e.g. connect-forwarder.")
        parser.add_argument(
            "--role",
            choices=ApiKeyRole.values,
            default=ApiKeyRole.USER,
            help="user (acts as the user) or integration (integration endpoints only).",
        )
        parser.add_argument("--rate-limit", type=int, default=None, help="Requests/minute.")
        parser.add_argument("--expires-days", type=int, default=None, help="Expiry in days.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user {options['user']!r}.")
        days = options["expires_days"]
        try:
            key, raw = api_key_create(
                name=options["name"],
                user=user,
                role=options["role"],
                rate_limit_per_minute=options["rate_limit"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created {key.role} key {key} for {user}. Copy it now:")
        self.stdout.write(raw)
