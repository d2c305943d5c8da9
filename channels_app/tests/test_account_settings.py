"""An account's settings are checked wherever they are written: a typo is refused with a
message naming the key, not found later as failed replies or an option silently ignored."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from channels_app.account_settings import account_settings_problems
from channels_app.models import ChannelAccount
from channels_app.services import channel_account_settings_update
from channels_app.services.handoff import handoff_trusts_email
from channels_app.tests.conftest import make_account
from support.errors import InvalidInput


def _public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def test_valid_settings_have_no_problem() -> None:
    assert account_settings_problems("email", {}) == []
    assert (
        account_settings_problems(
            "email",
            {
                "transport": "sendgrid",
                "from_email": "support@example.com",
                "from_name": "Support",
                "event_webhook_public_key": _public_key(),
            },
        )
        == []
    )
    assert account_settings_problems("twitter", {"send_auth": "oauth1", "app_id": 123}) == []
    assert account_settings_problems("messenger", {"app_id": "1234567890"}) == []
    for flag in (True, False, "true", "no", 1):
        assert account_settings_problems("chatbot", {"trusts_customer_email": flag}) == []


@pytest.mark.parametrize(
    ("channel", "values", "expected"),
    [
        ("email", {"trasport": "local_files"}, "Unknown setting 'trasport' for e-mail accounts"),
        ("email", {"transport": "smtp"}, "transport takes 'sendgrid' (the default)"),
        ("email", {"from_email": "not an address"}, "from_email takes an e-mail address"),
        ("email", {"from_name": "Support\r\nBcc: x@example.com"}, "got a line break"),
        ("email", {"event_webhook_public_key": "abc"}, "not a public key"),
        ("twitter", {"send_auth": "oauth3"}, "send_auth takes 'oauth2' (the default)"),
        ("messenger", {"app_id": "my app"}, "app_id takes the numeric id"),
        ("chatbot", {"trusts_customer_email": "ture"}, "trusts_customer_email takes true or false"),
        ("whatsapp", {"from_email": "a@example.com"}, "(known: none)"),
        ("email", ["transport", "sendgrid"], "Settings are a JSON object"),
    ],
)
def test_bad_settings_are_named(channel: str, values: Any, expected: str) -> None:
    problems = account_settings_problems(channel, values)
    assert len(problems) == 1
    assert expected in problems[0]


@override_settings(ENVIRONMENT="prod")
def test_local_files_is_refused_in_prod() -> None:
    (problem,) = account_settings_problems("email", {"transport": "local_files"})
    assert "refused with ENVIRONMENT=prod" in problem


@pytest.mark.django_db
def test_the_service_refuses_a_typo_and_keeps_the_stored_settings() -> None:
    account = channel_account_settings_update(make_account("email"), {"from_name": "Support"})
    with pytest.raises(InvalidInput) as raised:
        channel_account_settings_update(account, {"trasport": "local_files"})
    assert raised.value.details == {
        "settings": [
            "Unknown setting 'trasport' for e-mail accounts (known: event_webhook_public_key, "
            "from_email, from_name, transport)."
        ]
    }
    account.refresh_from_db()
    assert account.settings == {"from_name": "Support"}
    channel_account_settings_update(account, {"transport": "sendgrid"})
    account.refresh_from_db()
    assert account.settings == {"from_name": "Support", "transport": "sendgrid"}


@pytest.mark.django_db
def test_the_command_refuses_a_bad_setting_before_writing_the_account() -> None:
    with pytest.raises(CommandError, match="transport takes 'sendgrid'"):
        call_command(
            "channel_account_create",
            "--channel=email",
            "--name=support",
            "--setting=transport=smtp",
            stdout=io.StringIO(),
        )
    assert not ChannelAccount.objects.filter(name="support").exists()
    call_command(
        "channel_account_create",
        "--channel=chatbot",
        "--name=bot",
        "--setting=trusts_customer_email=true",
        stdout=io.StringIO(),
    )
    account = ChannelAccount.objects.get(name="bot")
    assert account.settings == {"trusts_customer_email": "true"}
    assert handoff_trusts_email(account)


@pytest.mark.django_db
def test_the_admin_shows_what_is_wrong_and_saves_nothing(
    supervisor: Any, django_user_model: Any
) -> None:
    django_user_model.objects.filter(pk=supervisor.pk).update(is_superuser=True)
    client = Client()
    client.force_login(supervisor)
    account = channel_account_settings_update(make_account("email"), {"transport": "sendgrid"})
    form = {
        "channel": "email",
        "name": account.name,
        "external_id": "support@example.com",
        "settings": json.dumps({"transport": "sendgird"}),
        "is_active": "on",
    }
    url = f"/admin/channels_app/channelaccount/{account.pk}/change/"
    response = client.post(url, form)
    assert response.status_code == 200  # the form again, with the error
    assert "transport takes &#x27;sendgrid&#x27; (the default)" in response.content.decode()
    account.refresh_from_db()
    assert account.settings == {"transport": "sendgrid"}
    response = client.post(url, {**form, "settings": json.dumps({"transport": "local_files"})})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.settings == {"transport": "local_files"}
