"""Helpers shared by every outbound integration: error classification, backoff, the
``X-Request-ID`` header (``outbound_headers``) that ties a call to the request or task
behind it in the logs (``support.logging_context``), and a bounded read of an answer's
body (``body_read_bounded``)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import requests
import urllib3

from support.errors import RETRYABLE_STATUSES, THROTTLED_STATUSES, http_status_kind
from support.logging_context import outbound_headers
from support.models import AttemptOutcome

__all__ = [
    "RETRYABLE_HTTP",
    "AnswerTooLarge",
    "AnswerTooSlow",
    "backoff_seconds",
    "body_read_bounded",
    "classify_http_status",
    "outbound_headers",
    "response_read_bounded",
    "retry_after_from_headers",
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


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds form; dates are ignored).
    Private: callers read an answer's headers whole (:func:`retry_after_from_headers`),
    so a target's rate-limit reset is never missed."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


#: The rate limits whose reset is read when an answer has no ``Retry-After``: the prefix of
#: a ``<prefix>-remaining`` / ``<prefix>-reset`` header pair (names are case-insensitive),
#: the reset the Unix time in seconds when that window opens again. X: its 15-minute
#: window (``x-rate-limit-*``; X sends no ``Retry-After`` with its 429) and its 24-hour
#: caps per user and per app; SendGrid: ``X-RateLimit-*``.
RATE_LIMIT_HEADERS = (
    "x-rate-limit",
    "x-user-limit-24hour",
    "x-app-limit-24hour",
    "x-ratelimit",
)
#: A reset value below this is not a Unix time (that would be before 2001) but seconds
#: from now, as some APIs send it.
_EPOCH_MIN = 1_000_000_000


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds a throttled answer asks us to wait, from its headers: ``Retry-After``
    (delta-seconds), else the latest reset of a rate limit that is used up
    (``RATE_LIMIT_HEADERS``; its ``-remaining`` 0, or not given): the seconds until then,
    plus one (the window opens within that second), never below 0. ``None`` when no
    header says. The one reading of a throttled answer's wait for every outbound caller
    (channel adapters, the chatbot hand-off callback, outgoing webhooks, alert targets, the
    ticketing sync, Salesforce, AWS errors). Not capped here: the delivery engine caps every wait at
    ``DELIVERY_RETRY_AFTER_MAX_SECONDS`` (``support.delivery.registry.Schedule``)."""
    lowered = {str(name).lower(): str(value).strip() for name, value in headers.items()}
    retry_after = _retry_after_seconds(lowered.get("retry-after"))
    if retry_after is not None:
        return retry_after
    current = time.time() if now is None else now
    waits = []
    for prefix in RATE_LIMIT_HEADERS:
        remaining = lowered.get(f"{prefix}-remaining", "")
        if remaining and remaining not in ("0", "0.0"):
            continue  # this limit is not what ran out
        try:
            reset = float(lowered.get(f"{prefix}-reset", ""))
        except ValueError:
            continue
        if reset >= 0:
            waits.append(reset if reset < _EPOCH_MIN else max(0.0, reset - current + 1.0))
    return max(waits) if waits else None


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


class AnswerTooLarge(requests.RequestException):
    """An answer's body is larger than the caller reads."""


class AnswerTooSlow(requests.Timeout):
    """An answer's body did not arrive whole within the caller's deadline."""


def body_read_bounded(response: requests.Response, *, max_bytes: int, seconds: float) -> bytes:
    """The body of ``response`` (made with ``stream=True``): at most ``max_bytes``
    (``AnswerTooLarge`` past them, or at once on a ``Content-Length`` that says so) and
    within ``seconds`` in all (``AnswerTooSlow``). ``requests``' own timeout bounds each
    wait between bytes, not the whole read: an endpoint trickling a byte at a time held its
    caller as long as it liked, and a large answer was read whole into memory before
    anything looked at its size. Both are ``requests.RequestException``: a caller's
    handler of failed calls takes them (``exc.response`` is the answer, its status and
    headers read, its body not). The response is closed."""
    with response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise AnswerTooLarge(
                f"the answer is {declared} bytes, over {max_bytes}", response=response
            )
        deadline = time.monotonic() + seconds
        data = bytearray()
        while True:
            # read1: whatever has arrived (each wait bounded by the read timeout), so the
            # deadline is checked between trickled bytes; a read of N bytes waits for N
            try:
                chunk = response.raw.read1(16_384, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise AnswerTooSlow(
                    f"the answer stopped arriving ({exc})", response=response
                ) from exc
            except urllib3.exceptions.HTTPError as exc:  # a broken or malformed stream
                raise requests.ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > max_bytes:
                raise AnswerTooLarge(f"the answer is over {max_bytes} bytes", response=response)
            if time.monotonic() > deadline:
                raise AnswerTooSlow(
                    f"the answer took over {seconds:g} s to arrive", response=response
                )


def response_read_bounded(
    response: requests.Response, *, max_bytes: int, seconds: float
) -> requests.Response:
    """``response`` (made with ``stream=True``) with its body read by
    :func:`body_read_bounded`: its ``content``, ``text`` and ``json()`` then answer from the
    bytes read, for a call site that reads the answer through them."""
    response._content = body_read_bounded(response, max_bytes=max_bytes, seconds=seconds)
    response._content_consumed = True  # type: ignore[attr-defined]  # iter_content: these bytes
    return response
