"""Signed router artifacts: a trained router is a joblib (pickle) file, and unpickling runs
code, so bytes are unpickled only after their HMAC-SHA256 checks out.

Format (version 1)::

    b"SUPPORT-ROUTER-ARTIFACT/1\\n" + HMAC-SHA256(key, header + payload) (32 bytes) + payload

where ``payload`` is the compressed joblib dump. The key is ``ROUTER_ARTIFACT_KEY``, or one
derived from ``SECRET_KEY`` when that is empty (and from each of ``SECRET_KEY_FALLBACKS``,
so Django's key rotation keeps stored models loadable). Whoever can write the database
(``RouterModel.artifact``) but not the settings can no longer make the workers run code.

Nothing here is committed to the repository: the shipped default router is trained at
first use from the committed Bitext CSV (``routing/data``) and signed like any other. A
committed artifact, if one is ever shipped, should carry the sha256 of its file in code
and be checked against that instead, so that it does not depend on a deployment's key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import Any

import joblib
from django.conf import settings

from support.errors import PermanentError

HEADER = b"SUPPORT-ROUTER-ARTIFACT/1\n"
MAC_SIZE = hashlib.sha256().digest_size
_KEY_PURPOSE = b"support.routing.artifact-signing"


class ArtifactError(PermanentError):
    """The bytes are not a router artifact signed with this deployment's key."""


def _derived(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def artifact_keys() -> list[bytes]:
    """The signing key first, then the older keys still accepted when verifying."""
    configured = getattr(settings, "ROUTER_ARTIFACT_KEY", "")
    if configured:
        return [configured.encode()]
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", [])
    return [_derived(settings.SECRET_KEY), *(_derived(k) for k in fallbacks)]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, HEADER + payload, hashlib.sha256).digest()


def artifact_sign(payload: bytes) -> bytes:
    """Wrap serialised bytes in a signed artifact (used by :func:`artifact_dump`, and to
    re-sign stored artifacts an operator vouches for)."""
    return HEADER + _mac(artifact_keys()[0], payload) + payload


def artifact_dump(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return artifact_sign(buffer.getvalue())


def artifact_payload(data: bytes) -> bytes:
    """The verified payload of a signed artifact; :class:`ArtifactError` otherwise."""
    data = bytes(data)
    if not data.startswith(HEADER):
        raise ArtifactError(
            "Not a signed router artifact (stored before artifacts were signed?). Retrain "
            "it, or re-sign it with `manage.py router_artifacts_sign` if you trust it."
        )
    mac = data[len(HEADER) : len(HEADER) + MAC_SIZE]
    payload = data[len(HEADER) + MAC_SIZE :]
    if any(hmac.compare_digest(mac, _mac(key, payload)) for key in artifact_keys()):
        return payload
    raise ArtifactError(
        "Router artifact signature mismatch: refused to load it (tampered with, or signed "
        "with another ROUTER_ARTIFACT_KEY / SECRET_KEY). Retrain it, or re-sign it with "
        "`manage.py router_artifacts_sign` if you trust it."
    )


def artifact_load(data: bytes) -> Any:
    """Verify, then unpickle. Unverified bytes are never unpickled."""
    payload = artifact_payload(data)
    return joblib.load(io.BytesIO(payload))


def artifact_resign(data: bytes) -> bytes:
    """Sign stored bytes again with the current key, without loading them: a legacy
    unsigned joblib dump, or an artifact signed with a key no longer configured. Only for
    bytes an operator trusts (``router_artifacts_sign --trust-unverified``)."""
    data = bytes(data)
    payload = data[len(HEADER) + MAC_SIZE :] if data.startswith(HEADER) else data
    return artifact_sign(payload)
