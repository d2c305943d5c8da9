"""Channel account secrets are encrypted at rest and read back as plaintext."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.apps import apps as global_apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from support.crypto import secret_decrypt, secret_encrypt
from support.testing.processes import python_run

pytestmark = pytest.mark.django_db

SECRET_COLUMNS = (
    "app_secret",
    "verify_token",
    "access_token",
    "consumer_secret",
    "inbound_token",
    "token_secret",
)


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


# --- key rotation (issue #13) -------------------------------------------------------------


def test_an_old_key_still_decrypts_and_the_command_re_encrypts_with_the_newest(
    settings: Any,
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHANNELS_SECRETS_KEY = [old_key]
    account = make_account("whatsapp", verify_token="verify-me")
    other = make_account("email", name="inbox")
    with connection.cursor() as cursor:  # a value stored before encryption existed
        cursor.execute(
            "UPDATE channels_app_channelaccount SET consumer_secret = 'legacy' WHERE id = %s",
            [account.pk],
        )
    before = raw_row(account.pk)

    settings.CHANNELS_SECRETS_KEY = f"{new_key}, {old_key}"  # newest first, comma-separated
    fresh = ChannelAccount.objects.get(pk=account.pk)
    assert (fresh.app_secret, fresh.verify_token, fresh.consumer_secret) == (
        "test-app-secret",
        "verify-me",
        "legacy",
    )
    out = io.StringIO()
    call_command("channel_secrets_reencrypt", "--batch-size", "1", stdout=out)
    assert out.getvalue().splitlines() == [
        "channels_app.ChannelAccount: 1/2 rows",
        "channels_app.ChannelAccount: 2/2 rows",
        "2 rows checked: 6 secret(s) re-encrypted with the newest key, 0 already current.",
    ]
    after = raw_row(account.pk)
    newest = Fernet(new_key.encode())
    for name in ("app_secret", "verify_token", "access_token", "consumer_secret"):
        assert after[name] != before[name]
        assert newest.decrypt(after[name].removeprefix("fernet:").encode())
    assert after["inbound_token"] == ""

    settings.CHANNELS_SECRETS_KEY = [new_key]  # the old key can go now
    fresh = ChannelAccount.objects.get(pk=account.pk)
    assert (fresh.app_secret, fresh.verify_token, fresh.access_token, fresh.consumer_secret) == (
        "test-app-secret",
        "verify-me",
        "test-access-token",
        "legacy",
    )
    assert ChannelAccount.objects.get(pk=other.pk).inbound_token == "test-app-secret"

    again = io.StringIO()  # idempotent: nothing left to do, nothing written
    call_command("channel_secrets_reencrypt", stdout=again)
    assert again.getvalue().splitlines()[-1] == (
        "2 rows checked: 0 secret(s) re-encrypted with the newest key, 6 already current."
    )
    assert raw_row(account.pk) == after


def test_the_command_reports_secrets_no_key_can_read(settings: Any) -> None:
    settings.CHANNELS_SECRETS_KEY = [Fernet.generate_key().decode()]
    account = make_account("whatsapp")
    settings.CHANNELS_SECRETS_KEY = [Fernet.generate_key().decode()]  # the old key is lost
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    with pytest.raises(CommandError, match=rf"2 secret\(s\) could not be decrypted.*{account.pk}"):
        call_command("channel_secrets_reencrypt", stdout=io.StringIO())


def test_prod_without_channels_secrets_key_fails_fast() -> None:
    """Settings are read once per process: load them in a fresh one."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ENVIRONMENT": "prod",
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "SECRET_KEY": "prod-secret-key-for-this-test-only-0123456789abcdefghij",
        "ALLOWED_HOSTS": "support.example.com",
        "SITE_URL": "https://support.example.com",
        "DATABASE_URL": "postgresql://u:p@db.invalid/support",
        "DB_USER": "u",
        "DB_PASSWORD": "p",
        "REDIS_URL": "redis://redis.invalid:6379/0",
    }
    code = "import django; django.setup()"

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return python_run(["-c", code], env={**env, **extra})

    missing = run()
    assert missing.returncode != 0
    assert "ImproperlyConfigured" in missing.stderr
    assert "CHANNELS_SECRETS_KEY" in missing.stderr
    configured = run(CHANNELS_SECRETS_KEY=Fernet.generate_key().decode())
    assert "CHANNELS_SECRETS_KEY" not in configured.stderr


def test_a_malformed_key_fails_at_start() -> None:
    env = {**os.environ, "CHANNELS_SECRETS_KEY": f"{Fernet.generate_key().decode()},oops"}
    started = python_run(["-c", "import django; django.setup()"], env=env)
    assert started.returncode != 0
    assert "CHANNELS_SECRETS_KEY: key 2 must be a Fernet key" in started.stderr
