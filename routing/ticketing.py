"""The external ticketing system's HTTP adapter (seed 004's "Ticketing System Update"):
one POST of a routing decision to ``TICKETING_SYSTEM_URL``, with a bearer token when
``TICKETING_SYSTEM_TOKEN`` is set and the delivery's ``Idempotency-Key`` so that a retry of
a request that did arrive is recognised by the ticketing system instead of applied twice.

Only this module calls the ticketing system. It answers what the system said (the delivery
engine classifies the status: 2xx success, 429 throttled, 401 refused credentials, 408/425
/5xx retryable, other 4xx permanent); a timeout or refused connection is retryable, a URL
requests cannot use (no scheme, another scheme, no host) permanent.
The answer is read within ``TICKETING_SYSTEM_TIMEOUT`` in all (a trickle of bytes is a
timeout, retryable) and up to ``ANSWER_MAX_BYTES`` (``support.outbound.body_read_bounded``):
the answer is only recorded, 64 KiB is far more than an acknowledgement; a larger one is a
permanent failure (the endpoint answers that way, a retry would too), never read whole.
Redirects are not followed: requests would re-send the POST as a GET of the new address,
and that page's 200 would be recorded as a sync that never happened. A 3xx is a permanent
failure naming the address it points to (set ``TICKETING_SYSTEM_URL`` to that).
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult, answer_too_large_error
from support.outbound import (
    AnswerTooLarge,
    outbound_headers,
    response_read_bounded,
    retry_after_from_headers,
)

#: What requests raises for a URL it cannot send to (no or another scheme, no host).
INVALID_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)
#: The most of an answer read: an acknowledgement, recorded (2,000 characters) not parsed.
ANSWER_MAX_BYTES = 64 * 1024


def ticketing_post(*, body: dict[str, Any], idempotency_key: str) -> SendResult:
    url = settings.TICKETING_SYSTEM_URL
    if not url:
        raise DeliveryError(
            "TICKETING_SYSTEM_URL is not set any more: nowhere to send the decision.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    headers = {"Idempotency-Key": idempotency_key}
    if settings.TICKETING_SYSTEM_TOKEN:
        headers["Authorization"] = f"Bearer {settings.TICKETING_SYSTEM_TOKEN}"
    try:
        response = requests.post(
            url,
            json=body,
            headers=outbound_headers(headers),
            timeout=settings.TICKETING_SYSTEM_TIMEOUT,
            allow_redirects=False,
            stream=True,
        )
        response_read_bounded(
            response,
            max_bytes=ANSWER_MAX_BYTES,
            seconds=float(settings.TICKETING_SYSTEM_TIMEOUT),
        )
    except INVALID_URL as exc:  # configuration: every retry would fail the same way
        raise DeliveryError(
            f"TICKETING_SYSTEM_URL {url!r} cannot be used ({type(exc).__name__}: {exc}).",
            outcome=Outcome.PERMANENT,
            error_code="invalid_url",
        ) from exc
    except AnswerTooLarge as exc:
        raise answer_too_large_error(exc, whose="The ticketing system's") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    ok = 200 <= response.status_code < 300
    error = "" if ok else response.text[:1000]
    if 300 <= response.status_code < 400:
        location = response.headers.get("Location", "")[:500] or "no Location header"
        error = f"The ticketing system redirected the POST ({location}); it is not followed."
    return SendResult(
        http_status=response.status_code,
        retry_after=retry_after_from_headers(response.headers),  # or a reset header
        request_summary={"url": url, "idempotency_key": idempotency_key},
        response_summary=response.text[:2000],
        error=error,
    )
