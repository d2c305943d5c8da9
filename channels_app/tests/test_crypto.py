"""Channel account secrets are encrypted at rest and read back as plaintext."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.apps import apps as global_apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from channels_app.crypto import secret_decrypt, secret_encrypt
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account

pytestmark = pytest.mark.django_db

SECRET_COLUMNS = ("app_secret", "verify_token", "access_token", "consumer_secret", "inbound_token")


def raw_row(pk: int) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(SECRET_COLUMNS)} FROM channels_app_channelaccount WHERE id = %s",  # noqa: S608
            [pk],
        )
        row = cursor.fetchone()
    return dict(zip(SECRET_COLUMNS, row, strict=True))


def test_secrets_are_stored_encrypted_and_read_back_in_plaintext() -> None:
    account = make_account("whatsapp", verify_token="verify-me")
    raw = raw_row(account.pk)
    assert raw["consumer_secret"] == raw["inbound_token"] == ""  # empty stays empty
    for name, plain in (
        ("app_secret", "test-app-secret"),
        ("verify_token", "verify-me"),
        ("access_token", "test-access-token"),
    ):
        assert raw[name].startswith("fernet:")
        assert plain not in raw[name]
    fresh = ChannelAccount.objects.get(pk=account.pk)
    assert (fresh.app_secret, fresh.verify_token, fresh.access_token) == (
        "test-app-secret",
        "verify-me",
        "test-access-token",
    )
    assert list(
        ChannelAccount.objects.exclude(app_secret="").values_list("app_secret", flat=True)
    ) == ["test-app-secret"]


def test_plaintext_rows_from_before_are_read_and_encrypted_by_the_migration() -> None:
    account = make_account("whatsapp")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE channels_app_channelaccount SET app_secret = 'legacy' WHERE id = %s",
            [account.pk],
        )
    assert ChannelAccount.objects.get(pk=account.pk).app_secret == "legacy"
    migration = importlib.import_module("channels_app.migrations.0002_account_secrets_encrypted")

    class Editor:
        pass

    editor: Any = Editor()
    editor.connection = connection
    migration.encrypt_existing(global_apps, editor)
    assert raw_row(account.pk)["app_secret"].startswith("fernet:")
    assert ChannelAccount.objects.get(pk=account.pk).app_secret == "legacy"


def test_values_under_the_derived_key_stay_readable_with_a_dedicated_key(settings: Any) -> None:
    settings.CHANNELS_SECRETS_KEY = ""
    old = secret_encrypt("s3cret")
    settings.CHANNELS_SECRETS_KEY = Fernet.generate_key().decode()
    assert secret_decrypt(old) == "s3cret"
    new = secret_encrypt("s3cret")
    settings.CHANNELS_SECRETS_KEY = Fernet.generate_key().decode()  # another key: lost
    settings.SECRET_KEY = "a-different-secret-key-for-this-test-only-0123456789"
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        secret_decrypt(new)
    settings.CHANNELS_SECRETS_KEY = "not-a-key"
    with pytest.raises(ImproperlyConfigured, match="must be a Fernet key"):
        secret_encrypt("x")
