"""The non-secret options a channel account takes (``ChannelAccount.settings``), per channel,
and what each may hold.

Every way of writing an account's settings checks them here (the admin's form,
``channel_account_create --setting``, the demo mailbox), so a typo is refused with a
message that names the key and what it takes, instead of showing up later as failed
replies ("Unknown e-mail transport") or as an option silently ignored (``trasport``).
Readers keep their own defaults for a missing key; nothing here changes what a stored,
valid setting means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

#: What ``handoff_trusts_email`` reads as yes; the other words it reads as no.
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no", "")


@dataclass(frozen=True)
class Setting:
    name: str
    #: What the setting takes, as the error message says it.
    takes: str
    #: The problem with a value (a phrase after "takes …"), or None when it is fine.
    check: Callable[[Any], str | None]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"got {type(value).__name__}"
    if "\r" in value or "\n" in value:
        return "got a line break"
    return None


def _non_empty_text(value: Any) -> str | None:
    problem = _text(value)
    if problem is None and not value.strip():
        return "got an empty value"
    return problem


def _digits(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"got {type(value).__name__}"
    if not str(value).strip().isdigit():
        return f"got {str(value)[:40]!r}"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"got {str(value)[:40]!r}"

    return check


def _transport(value: Any) -> str | None:
    from channels_app.adapters.email.outgoing import TRANSPORT_LOCAL_FILES, TRANSPORT_SENDGRID

    problem = _one_of(TRANSPORT_SENDGRID, TRANSPORT_LOCAL_FILES)(value)
    if problem is None and value == TRANSPORT_LOCAL_FILES and django_settings.ENVIRONMENT == "prod":
        return (
            "got 'local_files', which is refused with ENVIRONMENT=prod (its replies are files "
            "on this machine and never reach a customer)"
        )
    return problem


def _email(value: Any) -> str | None:
    problem = _non_empty_text(value)
    if problem is not None:
        return problem
    try:
        validate_email(value)
    except ValidationError:
        return f"got {value[:60]!r}"
    return None


def _public_key(value: Any) -> str | None:
    from channels_app.adapters.email.events import load_public_key

    if not isinstance(value, str) or not value.strip():
        return "got an empty value" if isinstance(value, str) else f"got {type(value).__name__}"
    try:
        load_public_key(value)
    except ValueError as exc:
        return f"got a value that is {exc}"
    return None


def _flag(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return None
    if isinstance(value, str) and value.strip().lower() in (*TRUE_WORDS, *FALSE_WORDS):
        return None
    return f"got {str(value)[:40]!r}"


_APP_ID = Setting(
    "app_id",
    "the numeric id of the app that sends our replies (its echoes are skipped)",
    _digits,
)

SETTINGS: dict[str, tuple[Setting, ...]] = {
    "email": (
        Setting("transport", "'sendgrid' (the default) or 'local_files'", _transport),
        Setting("from_email", "an e-mail address", _email),
        Setting("from_name", "a name on one line", _text),
        Setting(
            "event_webhook_public_key",
            "SendGrid's Event Webhook verification key (base64 DER or PEM, elliptic curve)",
            _public_key,
        ),
    ),
    "messenger": (_APP_ID,),
    "instagram": (_APP_ID,),
    "twitter": (
        _APP_ID,
        Setting("send_auth", "'oauth2' (the default) or 'oauth1'", _one_of("oauth2", "oauth1")),
        Setting("consumer_key", "the OAuth 1.0a consumer (API) key", _non_empty_text),
        Setting("oauth_token", "the OAuth 1.0a access token", _non_empty_text),
        Setting(
            "granted_scopes",
            "the OAuth 2.0 scopes X granted the token, space-separated (kept by every refresh)",
            _text,
        ),
    ),
    "chatbot": (
        Setting(
            "trusts_customer_email",
            "true or false (whether the bot vouches for the addresses its users give)",
            _flag,
        ),
        Setting(
            "require_signature_timestamp",
            "true or false (whether a hand-off must be signed with X-Signature-Timestamp)",
            _flag,
        ),
    ),
}

_CHANNEL_NAMES = {"email": "e-mail", "twitter": "X"}


def account_settings_problems(channel: str, values: Any) -> list[str]:
    """What is wrong with ``values`` as the settings of an account on ``channel`` (empty
    when nothing is): one sentence per problem, naming the key and what it takes."""
    if not isinstance(values, Mapping):
        return [f"Settings are a JSON object of options, not {type(values).__name__}."]
    known = {setting.name: setting for setting in SETTINGS.get(channel, ())}
    where = f"{_CHANNEL_NAMES.get(channel, channel)} accounts"
    problems = []
    for key in sorted(values, key=str):
        setting = known.get(str(key))
        if setting is None:
            options = ", ".join(sorted(known)) if known else "none"
            problems.append(f"Unknown setting {str(key)[:60]!r} for {where} (known: {options}).")
            continue
        problem = setting.check(values[key])
        if problem is not None:
            problems.append(f"{setting.name} takes {setting.takes}; {problem}.")
    return problems
