"""Helpers shared by every outbound integration: error classification, backoff, and the
``X-Request-ID`` header (``outbound_headers``) that ties a call to the request or task
behind it in the logs (``support.logging_context``)."""

from __future__ import annotations

import random

from support.errors import RETRYABLE_STATUSES, THROTTLED_STATUSES, http_status_kind
from support.logging_context import outbound_headers
from support.models import AttemptOutcome

__all__ = [
    "RETRYABLE_HTTP",
    "backoff_seconds",
    "classify_http_status",
    "outbound_headers",
    "parse_retry_after",
]

RETRYABLE_HTTP = RETRYABLE_STATUSES | THROTTLED_STATUSES  # 408, 425, 429 (and every 5xx)


def classify_http_status(status_code: int) -> AttemptOutcome:
    """2xx success; timeouts, 429 and 5xx retryable; any other 4xx permanent.

    The table is ``support.errors.http_status_kind`` (shared with ``support.aws``), which
    also tells throttled from retryable and auth from permanent."""
    kind = http_status_kind(status_code)
    if kind is None:
        return AttemptOutcome.SUCCESS
    return AttemptOutcome.RETRYABLE if kind.retryable else AttemptOutcome.PERMANENT


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def backoff_seconds(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    retry_after: float | None = None,
    jitter: bool = True,
) -> float:
    """Exponential backoff for the ``attempt``-th retry (1-based), capped, with jitter.

    A server's ``Retry-After`` wins when it asks for longer.
    """
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    if jitter:
        delay = delay * (0.8 + 0.4 * random.random())  # noqa: S311 - not cryptographic
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
