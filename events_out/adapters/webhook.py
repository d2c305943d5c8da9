"""Outgoing webhooks' HTTP: one signed POST of one event to a supervisor's URL.

Only this module calls webhook receivers. The URL is checked again before every send
(:func:`webhook_url_problem`: an ``https`` URL whose host resolves only to public
addresses, unless ``OUTGOING_WEBHOOKS_ALLOW_HTTP`` / ``_ALLOW_PRIVATE_NETWORKS`` say
otherwise), redirects are not followed (a 3xx is a permanent failure), and the answer is
returned for the delivery engine to classify (2xx success, 429 throttled, 401 refused,
408/425/5xx retryable, other 4xx permanent); a timeout or refused connection is retryable.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings

from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult
from support.outbound import parse_retry_after
from support.safe_urls import is_http_url

USER_AGENT = "support-desk-webhooks/1"


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def webhook_url_problem(url: str, *, resolve: bool = True) -> str:
    """Why ``url`` may not receive webhooks (``""`` when it may).

    The project's safe-URL rule first (``support.safe_urls``: an absolute http(s) URL with
    a host and no control characters), then ``https`` (unless ``OUTGOING_WEBHOOKS_ALLOW_HTTP``),
    no credentials in the URL, and, unless ``OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS``,
    every address the host resolves to is public (no loopback, private, link-local such as
    the cloud metadata service, or reserved range). ``resolve=False`` (a form) checks an
    address literal and ``localhost`` only; every send resolves."""
    if not is_http_url(url):
        return "Enter an absolute http(s) URL without spaces or control characters."
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" and not settings.OUTGOING_WEBHOOKS_ALLOW_HTTP:
        return "Webhook URLs must use https."
    if parts.username or parts.password:
        return "Put no credentials in the URL; receivers verify the signature instead."
    if settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        return ""
    host = parts.hostname or ""
    try:
        literal = _public(host)
    except ValueError:  # a name, not an address
        literal = host.lower().rstrip(".") not in ("localhost",) and not host.lower().endswith(
            ".localhost"
        )
    if not literal:
        return f"The host {host!r} is a private, loopback or reserved address."
    if not resolve:
        return ""
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        return f"The host {host!r} does not resolve."
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_public(a) for a in addresses):
        return f"The host {host!r} resolves to a private, loopback or reserved address."
    return ""


def webhook_post(*, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    problem = webhook_url_problem(url)
    if problem:
        raise DeliveryError(problem, outcome=Outcome.PERMANENT, error_code="unsafe_url")
    try:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=settings.OUTGOING_WEBHOOKS_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    ok = 200 <= response.status_code < 300
    return SendResult(
        http_status=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        request_summary={"url": url, "event_id": headers.get("Idempotency-Key", "")},
        response_summary=response.text[:500],
        error="" if ok else f"HTTP {response.status_code}: {response.text[:500]}",
    )
