"""The HTTP side shared by the Slack and PagerDuty adapters: the URL rule and the checked
connection (``support.safe_urls.public_post``: refused before sending when the host resolves,
or connects, to an internal address), one POST with ``ALERTS_HTTP_TIMEOUT``, no
redirects, and the answer returned for the delivery engine to classify (2xx success, 429
throttled, 401 refused, 408/425/5xx retryable, other 4xx permanent); a timeout or refused
connection is retryable. The answer is read within the timeout and up to 64 KiB
(``public_post``): a larger one is a permanent failure, never read whole into memory."""

from __future__ import annotations

import json
from typing import Any

import requests
from django.conf import settings

from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult, answer_too_large_error
from support.outbound import AnswerTooLarge, outbound_headers, retry_after_from_headers
from support.safe_urls import Resolver, UnsafeUrlError, public_post, public_url_error

USER_AGENT = "support-desk-alerts/1"
#: Tests replace it (no DNS here); None: the system resolver.
resolver: Resolver | None = None


def target_url_problem(url: str, *, resolve: bool = True) -> str:
    """Why the server must not call ``url`` (``""`` when it may): https, no credentials,
    public addresses only unless ``ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS``."""
    problem = public_url_error(
        url,
        allow_http=bool(settings.ALERTS_TARGETS_ALLOW_HTTP),
        allow_private=bool(settings.ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS),
        resolve_names=resolve,
        resolve=resolver,
    )
    return f"URL refused: {problem}." if problem else ""


def post_json(*, url: str, body: dict[str, Any], summary: dict[str, Any]) -> SendResult:
    try:
        response = public_post(
            url,
            allow_http=bool(settings.ALERTS_TARGETS_ALLOW_HTTP),
            allow_private=bool(settings.ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS),
            resolve=resolver,
            data=json.dumps(body, separators=(",", ":"), default=str).encode(),
            headers=outbound_headers(
                {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            ),
            timeout=float(settings.ALERTS_HTTP_TIMEOUT),
        )
    except UnsafeUrlError as exc:
        raise DeliveryError(
            f"URL refused: {exc}.", outcome=Outcome.PERMANENT, error_code="unsafe_url"
        ) from exc
    except AnswerTooLarge as exc:
        raise answer_too_large_error(exc, whose="The alert target's") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    ok = 200 <= response.status_code < 300
    return SendResult(
        http_status=response.status_code,
        retry_after=retry_after_from_headers(response.headers),  # or a reset header
        request_summary=summary,
        response_summary=response.text[:500],
        error="" if ok else f"HTTP {response.status_code}: {response.text[:500]}",
    )
