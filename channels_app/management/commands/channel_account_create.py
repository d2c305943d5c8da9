"""Create or update a channel account; the last line printed is its webhook URL path."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app import services
from support.errors import InvalidInput


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--external-id", help="phone_number_id, page id, X user id, address")
        parser.add_argument("--app-secret")
        parser.add_argument("--verify-token")
        parser.add_argument("--access-token")
        parser.add_argument("--consumer-secret")
        parser.add_argument("--inbound-token")
        parser.add_argument("--token-secret", help="X: OAuth 1.0a access token secret")
        parser.add_argument(
            "--setting",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a non-secret option (repeatable), e.g. consumer_key=… oauth_token=… for X",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = services.channel_account_upsert(
                channel=options["channel"],
                name=options["name"],
                external_id=options["external_id"],
                app_secret=options["app_secret"],
                verify_token=options["verify_token"],
                access_token=options["access_token"],
                consumer_secret=options["consumer_secret"],
                inbound_token=options["inbound_token"],
                token_secret=options["token_secret"],
            )
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        extra = {}
        for item in options["setting"]:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--setting takes KEY=VALUE, not {item!r}.")
            extra[key.strip()] = value
        if extra:
            account.settings = {**account.settings, **extra}
            account.save(update_fields=["settings", "updated_at"])
        self.stdout.write(f"{account} (id {account.pk})")
        self.stdout.write(account.webhook_path)
