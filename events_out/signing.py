"""The outgoing webhooks' signature (the scheme Stripe uses).

Each request carries ``Support-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256, keyed with the webhook's secret, of ``"<t>.<raw request body>"``. A receiver
recomputes it over the exact bytes it received, compares in constant time, and refuses a
timestamp older than its tolerance (five minutes is usual), which stops replays of an old
request. Every attempt is signed afresh (a retry has a new ``t``). docs/api.md has a
receiver's snippet; :func:`signature_verify` is the same check in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Support-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={signature_compute(secret=secret, timestamp=t, body=body)}"


def signature_verify(
    *,
    secret: str,
    header: str,
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, given) for given in parts.get(SCHEME, []))
