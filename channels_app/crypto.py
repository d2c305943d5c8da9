"""Channel account secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key is ``CHANNELS_SECRETS_KEY`` (a Fernet key: ``Fernet.generate_key()``) or, when
unset, one derived from ``SECRET_KEY``. Values encrypted under the ``SECRET_KEY``-derived
key stay readable after a dedicated key is configured (``MultiFernet``); saving a row
re-encrypts it with the current key. Plaintext values from before encryption are read as
they are and encrypted on the next save (migration 0002 re-saves every account).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


def _derived_key() -> bytes:
    digest = hashlib.sha256(b"channels-secrets:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    keys: list[Fernet] = []
    configured = str(getattr(settings, "CHANNELS_SECRETS_KEY", "") or "")
    if configured:
        try:
            keys.append(Fernet(configured.encode()))
        except ValueError as exc:
            raise ImproperlyConfigured(
                "CHANNELS_SECRETS_KEY must be a Fernet key (32 url-safe base64-encoded bytes)."
            ) from exc
    keys.append(Fernet(_derived_key()))
    return MultiFernet(keys)


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
