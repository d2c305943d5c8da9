"""Channel accounts: creation and their secrets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from channels_app.account_settings import account_settings_problems
from channels_app.adapters.base import (
    registered_channels,
)
from channels_app.models import ChannelAccount
from support.errors import InvalidInput

logger = logging.getLogger(__name__)


# --- accounts ---------------------------------------------------------------------------


SECRET_FIELDS = (
    "app_secret",
    "verify_token",
    "access_token",
    "consumer_secret",
    "inbound_token",
    "token_secret",
    "refresh_token",
    "client_secret",
)


def channel_account_upsert(
    *, channel: str, name: str, external_id: str | None = None, **secrets: str | None
) -> ChannelAccount:
    """Create or update an account by (channel, name); only the given secrets change."""
    if channel not in registered_channels() and channel != "chatbot":
        raise InvalidInput(
            f"Unknown channel {channel!r}.",
            details={"channel": [f"One of: {', '.join([*registered_channels(), 'chatbot'])}."]},
        )
    unknown = set(secrets) - set(SECRET_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
    account, _ = ChannelAccount.objects.get_or_create(channel=channel, name=name)
    fields = []
    if external_id is not None:
        account.external_id = external_id
        fields.append("external_id")
    for key, value in secrets.items():
        if value is not None:
            setattr(account, key, value)
            fields.append(key)
    if fields:
        account.save(update_fields=[*fields, "updated_at"])
    return account


def channel_account_settings_update(
    account: ChannelAccount, changes: Mapping[str, Any]
) -> ChannelAccount:
    """Set the options in ``changes`` on the account's settings (the others stay), after
    checking the result (``account_settings``): ``InvalidInput`` naming each bad key."""
    merged = {**account.settings, **changes}
    problems = account_settings_problems(account.channel, merged)
    if problems:
        raise InvalidInput(" ".join(problems), details={"settings": problems})
    account.settings = merged
    account.save(update_fields=["settings", "updated_at"])
    return account
