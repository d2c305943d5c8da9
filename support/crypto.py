"""Secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256): channel accounts, outgoing
webhooks and any model with an :class:`EncryptedSecretField`.

The keys are ``CHANNELS_SECRETS_KEY``: one or more Fernet keys (``Fernet.generate_key()``),
comma-separated, **newest first**. The first encrypts; every key decrypts
(``MultiFernet``), so a key can be rotated: put the new key first, keep the old ones,
run ``manage.py channel_secrets_reencrypt``, then drop the old keys. The key is required
when ``ENVIRONMENT=prod``; elsewhere, when unset, one derived from ``SECRET_KEY`` is used.
The derived key always stays last for decryption, so values written before a dedicated
key was configured stay readable until re-encrypted. Plaintext values from before
encryption are read as they are and encrypted on the next save (migration 0002 re-saves
every account).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction

PREFIX = "fernet:"


def _derived_key() -> bytes:
    digest = hashlib.sha256(b"channels-secrets:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def configured_keys() -> list[str]:
    """``CHANNELS_SECRETS_KEY`` as a list, newest first (a list or a comma-separated str)."""
    value = getattr(settings, "CHANNELS_SECRETS_KEY", "") or []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()]


def _keys() -> list[Fernet]:
    keys: list[Fernet] = []
    for position, configured in enumerate(configured_keys(), start=1):
        try:
            keys.append(Fernet(configured.encode()))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"CHANNELS_SECRETS_KEY: key {position} must be a Fernet key (32 url-safe "
                "base64-encoded bytes); several keys are comma-separated, newest first."
            ) from exc
    keys.append(Fernet(_derived_key()))
    return keys


def secrets_keys_check() -> None:
    """Raise ``ImproperlyConfigured`` now if a configured key is not a Fernet key."""
    _keys()


def _fernet() -> MultiFernet:
    return MultiFernet(_keys())


def secret_encrypt(value: str) -> str:
    if not value or value.startswith(PREFIX):
        return value
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def secret_decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        return value  # stored before encryption
    try:
        return _fernet().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A channel account secret cannot be decrypted: CHANNELS_SECRETS_KEY or "
            "SECRET_KEY changed since it was saved."
        ) from exc


class EncryptedSecretField(models.TextField):
    """A text column holding ``fernet:<token>``; Python sees the plaintext.

    Only the empty string can be compared in queries (ciphertexts are randomised).
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        return secret_decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return value
        return secret_encrypt(str(value))


# --- key rotation ---------------------------------------------------------------------------


@dataclass
class ReencryptResult:
    rows: int = 0
    reencrypted: int = 0  # values written again under the newest key
    current: int = 0  # values already under the newest key (left as they are)
    unreadable: list[str] = field(default_factory=list)  # "<model> <pk> <column>"


def encrypted_columns() -> list[tuple[type[models.Model], list[str]]]:
    """Every installed model with ``EncryptedSecretField`` columns, and those columns."""
    found = []
    for model in apps.get_models():
        columns = [
            f.column for f in model._meta.concrete_fields if isinstance(f, EncryptedSecretField)
        ]
        if columns:
            found.append((model, columns))
    return found


def _chunks(ids: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def secrets_reencrypt(*, batch_size: int = 200, progress: Any = None) -> ReencryptResult:
    """Re-encrypt every stored secret with the newest key (idempotent).

    Values already readable with the newest key are left alone, so a second run writes
    nothing. Plaintext values from before encryption are encrypted. Values no key can
    read are listed in ``unreadable`` and left alone. Each batch of rows is locked and
    written in its own transaction. ``progress(label, done, total)`` is called per batch.
    """
    newest = _keys()[0]
    every = _fernet()
    result = ReencryptResult()
    quote = connection.ops.quote_name
    for model, columns in encrypted_columns():
        label = model._meta.label
        table, pk_column = quote(model._meta.db_table), quote(model._meta.pk.column)
        ids = list(model._default_manager.order_by("pk").values_list("pk", flat=True))
        done = 0
        for chunk in _chunks(ids, batch_size):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {pk_column}, {', '.join(quote(c) for c in columns)} "  # noqa: S608
                    f"FROM {table} WHERE {pk_column} = ANY(%s) ORDER BY {pk_column} FOR UPDATE",
                    [chunk],
                )
                for pk, *values in cursor.fetchall():
                    result.rows += 1
                    updates: dict[str, str] = {}
                    for column, value in zip(columns, values, strict=True):
                        new = _reencrypted(value or "", newest, every)
                        if new is None:
                            result.unreadable.append(f"{label} {pk} {column}")
                        elif new == "":
                            if value:
                                result.current += 1
                        else:
                            updates[column] = new
                    if updates:
                        assignments = ", ".join(f"{quote(c)} = %s" for c in updates)
                        cursor.execute(
                            f"UPDATE {table} SET {assignments} WHERE {pk_column} = %s",  # noqa: S608
                            [*updates.values(), pk],
                        )
                        result.reencrypted += len(updates)
            done += len(chunk)
            if progress is not None:
                progress(label, done, len(ids))
    return result


def _reencrypted(value: str, newest: Fernet, every: MultiFernet) -> str | None:
    """The value to store under the newest key; "" when nothing is to be written (empty,
    or already under the newest key); None when no key can read it."""
    if not value:
        return ""
    if value.startswith(PREFIX):
        token = value[len(PREFIX) :].encode()
        try:
            newest.decrypt(token)
            return ""
        except InvalidToken:
            pass
        try:
            plain = every.decrypt(token)
        except InvalidToken:
            return None
    else:
        plain = value.encode()  # stored before encryption
    return PREFIX + newest.encrypt(plain).decode()
