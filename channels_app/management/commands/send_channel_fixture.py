"""Replay a recorded fixture, correctly signed, against a running server."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app.fixtures import fixture_load, fixture_names, signed_headers
from channels_app.models import ChannelAccount


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel")
        parser.add_argument("fixture", help="fixture name, e.g. text_message")
        parser.add_argument("--url", help="base URL of the server (default SITE_URL)")
        parser.add_argument("--account", help="account name (default: the first active one)")

    def handle(self, *args: Any, **options: Any) -> None:
        channel = options["channel"]
        accounts = ChannelAccount.objects.filter(channel=channel, is_active=True)
        if options["account"]:
            accounts = accounts.filter(name=options["account"])
        account = accounts.order_by("pk").first()
        if account is None:
            raise CommandError(
                f"No active {channel} account: create one with channel_account_create."
            )
        try:
            fixture = fixture_load(channel, options["fixture"])
        except FileNotFoundError as exc:
            names = ", ".join(fixture_names(channel)) or "none"
            raise CommandError(f"{exc}. Available: {names}") from exc
        base = (options["url"] or settings.SITE_URL).rstrip("/")
        url = f"{base}{account.webhook_path}"
        request = urllib.request.Request(  # noqa: S310 - operator-given URL
            url, data=fixture.body, headers=signed_headers(account, fixture), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        except OSError as exc:
            raise CommandError(f"Could not reach {url}: {exc}") from exc
        self.stdout.write(f"POST {url} -> {status} {body}")
        if status >= 400:
            raise CommandError(f"The server answered {status}.")
