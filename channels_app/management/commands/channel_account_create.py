"""Create or update a channel account; the last line printed is its webhook URL path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app import services
from channels_app.account_settings import account_settings_problems
from channels_app.adapters.base import registered_channels
from channels_app.adapters.twitter import tokens
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
            "--refresh-token", help="X: OAuth 2.0 refresh token (scope offline.access)"
        )
        parser.add_argument("--client-id", help="X: OAuth 2.0 Client ID of the app")
        parser.add_argument(
            "--client-secret", help="X: OAuth 2.0 Client Secret (confidential clients only)"
        )
        parser.add_argument(
            "--token-scope",
            metavar="SCOPES",
            help="X: the scopes X granted the access token (scope of X's answer, "
            "space-separated); without media.write replies can't carry files",
        )
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument(
            "--token-expires-in",
            type=int,
            metavar="SECONDS",
            help="X: seconds the access token has left (expires_in of X's answer, 7200)",
        )
        expiry.add_argument(
            "--token-expires-at",
            metavar="ISO_DATETIME",
            help="X: when the access token expires (ISO 8601; UTC without an offset)",
        )
        parser.add_argument(
            "--setting",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a non-secret option (repeatable), e.g. consumer_key=… oauth_token=… for X",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expires_at = _expires_at(options["token_expires_at"])
        if options["token_expires_in"] is not None and options["token_expires_in"] < 0:
            raise CommandError("--token-expires-in takes a number of seconds (0 or more).")
        extra = {}
        for item in options["setting"]:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--setting takes KEY=VALUE, not {item!r}.")
            extra[key.strip()] = value
        # checked before the account is written (an unknown channel is refused below)
        problems = account_settings_problems(options["channel"], extra)
        if problems and options["channel"] in [*registered_channels(), "chatbot"]:
            raise CommandError(" ".join(problems))
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
                refresh_token=options["refresh_token"],
                client_secret=options["client_secret"],
            )
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        oauth2 = ("access_token", "refresh_token", "client_secret", "client_id")
        if (
            any(options[name] is not None for name in oauth2)
            or expires_at is not None
            or (options["token_expires_in"] is not None)
            or options["token_scope"] is not None
        ):
            tokens.tokens_configure(
                account=account,
                client_id=options["client_id"],
                expires_at=expires_at,
                expires_in=options["token_expires_in"],
                access_token_set=options["access_token"] is not None,
                credentials_set=any(options[name] is not None for name in oauth2[:3]),
                scope=options["token_scope"],
            )
        if extra:
            try:
                services.channel_account_settings_update(account, extra)
            except InvalidInput as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(f"{account} (id {account.pk})")
        self.stdout.write(account.webhook_path)


def _expires_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"--token-expires-at takes an ISO 8601 date and time, not {value!r}.")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
