"""Outgoing webhooks' HTTP: one signed POST of one event to a supervisor's URL.

Only this module calls webhook receivers, through ``support.safe_urls.public_post``: the URL
is checked before every send (an ``https`` URL whose host resolves only to public addresses,
unless ``OUTGOING_WEBHOOKS_ALLOW_HTTP`` / ``_ALLOW_PRIVATE_NETWORKS`` say otherwise), the
connection's peer address is checked again after connecting (DNS rebinding), redirects are
not followed (a 3xx is a permanent failure), and the answer is returned for the delivery
engine to classify (2xx success, 429 throttled, 401 refused, 408/425/5xx retryable, other
4xx permanent); a timeout or refused connection is retryable. The answer is read within
``OUTGOING_WEBHOOKS_TIMEOUT`` in all and up to 64 KiB (``public_post``; a receiver
acknowledges, its answer is only recorded): a larger one is a permanent failure, never
read whole into memory.
"""

from __future__ import annotations

import requests
from django.conf import settings

from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult, answer_too_large_error
from support.outbound import AnswerTooLarge, outbound_headers, retry_after_from_headers
from support.safe_urls import UnsafeUrlError, public_post, public_url_error

USER_AGENT = "support-desk-webhooks/1"


def webhook_url_problem(url: str, *, resolve: bool = True) -> str:
    """Why ``url`` may not receive webhooks (``""`` when it may): the project's rule for
    URLs the server calls (``support.safe_urls.public_url_error``: ``https`` unless
    ``OUTGOING_WEBHOOKS_ALLOW_HTTP``, no credentials in the URL, and, unless
    ``OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS``, every address the host resolves to is
    public). ``resolve=False`` (a form) checks an address literal and ``localhost`` only;
    every send resolves."""
    problem = public_url_error(
        url,
        allow_http=bool(settings.OUTGOING_WEBHOOKS_ALLOW_HTTP),
        allow_private=bool(settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS),
        resolve_names=resolve,
    )
    return f"Webhook URL refused: {problem}." if problem else ""


def webhook_post(*, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    try:
        response = public_post(
            url,
            allow_http=bool(settings.OUTGOING_WEBHOOKS_ALLOW_HTTP),
            allow_private=bool(settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS),
            data=body,
            headers=outbound_headers(
                {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
            ),
            timeout=settings.OUTGOING_WEBHOOKS_TIMEOUT,
        )
    except UnsafeUrlError as exc:
        raise DeliveryError(
            f"Webhook URL refused: {exc}.", outcome=Outcome.PERMANENT, error_code="unsafe_url"
        ) from exc
    except AnswerTooLarge as exc:
        raise answer_too_large_error(exc, whose="The webhook receiver's") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    ok = 200 <= response.status_code < 300
    return SendResult(
        http_status=response.status_code,
        retry_after=retry_after_from_headers(response.headers),  # or a reset header
        request_summary={"url": url, "event_id": headers.get("Idempotency-Key", "")},
        response_summary=response.text[:500],
        error="" if ok else f"HTTP {response.status_code}: {response.text[:500]}",
    )
