"""Rate limits per API key, per user and per IP: a fixed one-minute window in Redis.

Over the limit the API answers 429 with ``Retry-After``. When Redis cannot be reached the
limiter lets requests through (an outage of the limiter must not become an outage of the
product) but never silently: each such request is counted in this process
(:func:`fail_open_count`, reported by ``/health``) and logged with the running count.

The client address of a request is the socket peer unless proxies are trusted
(``TRUSTED_PROXY_HOPS`` / ``TRUSTED_PROXY_CIDRS``): then it is the right-most
``X-Forwarded-For`` address that was not written by a trusted proxy. Everything to the
left of that is what the client itself sent and is never believed.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from support.models import ApiKey
from support.redis_client import get_redis

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60
FAIL_OPEN_LOG_EVERY_SECONDS = 10.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request: Request) -> str:
    return client_ip_from_meta(request.META)


def _parse_ip(value: str) -> str | None:
    """The canonical address in ``value`` (ports and IPv6 brackets stripped), else None."""
    value = value.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # "203.0.113.9:5678"
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


@cache
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _trusted_by_cidr(address: str | None, networks: Sequence[IPNetwork]) -> bool:
    if address is None or not networks:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in networks)


def client_ip_from_meta(meta: Mapping[str, Any]) -> str:
    """The client's address: the socket peer (``REMOTE_ADDR``) unless proxies are trusted.

    With ``TRUSTED_PROXY_HOPS = n`` the last ``n`` addresses of the chain (the
    ``X-Forwarded-For`` entries followed by the socket peer) are proxies we run; with
    ``TRUSTED_PROXY_CIDRS`` any address inside those networks is one. Walking the chain
    from the right, the first address that is not a trusted proxy is the client. A
    client cannot move that position by sending its own ``X-Forwarded-For``: proxies
    append, so whatever it sends ends up further left.
    """
    remote = str(meta.get("REMOTE_ADDR") or "unknown")
    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0) or 0)
    networks = _networks(tuple(getattr(settings, "TRUSTED_PROXY_CIDRS", ()) or ()))
    if hops <= 0 and not networks:
        return remote
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    chain = [part.strip() for part in forwarded.split(",") if part.strip()] + [remote]
    for position, raw in enumerate(reversed(chain)):
        address = _parse_ip(raw)
        if position < hops or _trusted_by_cidr(address, networks):
            continue
        return address or raw[:64]
    # Every address is a trusted proxy (or the chain is shorter than the hops we expect):
    # the left-most one is the farthest we can see.
    return _parse_ip(chain[0]) or chain[0][:64]


# --- fail-open accounting --------------------------------------------------------------


class _FailOpen:
    lock = threading.Lock()
    count = 0
    logged_at = 0.0


def fail_open_count() -> int:
    """Requests this process let through unchecked because Redis was unavailable."""
    return _FailOpen.count


def _record_fail_open(exc: Exception) -> None:
    now = time.monotonic()
    with _FailOpen.lock:
        _FailOpen.count += 1
        count = _FailOpen.count
        due = count == 1 or now - _FailOpen.logged_at >= FAIL_OPEN_LOG_EVERY_SECONDS
        if due:
            _FailOpen.logged_at = now
    if due:  # at most one line per FAIL_OPEN_LOG_EVERY_SECONDS under a long outage
        logger.error(
            "Rate limiter unavailable (Redis: %s); request allowed unchecked "
            "(%d allowed unchecked by this process so far)",
            type(exc).__name__,
            count,
        )


# Count and set the expiry in one command (a MULTI/EXEC pipeline costs twice the CPU here).
_INCR_WITH_EXPIRY = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@cache
def _incr_script_for(client: Any) -> Any:
    return client.register_script(_INCR_WITH_EXPIRY)


def _incr_script() -> Any:
    """The script bound to the current shared client (a new client after the Redis URL
    changed, e.g. in tests, gets its own: a cached one would keep talking to the old)."""
    return _incr_script_for(get_redis())


def hit(bucket: str, limit: int, window_seconds: int = WINDOW_SECONDS) -> float | None:
    """Count one request in ``bucket``; the seconds to wait when over ``limit`` in this
    window (a minute unless ``window_seconds`` says otherwise), else None."""
    now = time.time()
    window = int(now // window_seconds)
    key = (
        f"ratelimit:{bucket}:{window}"
        if window_seconds == WINDOW_SECONDS
        else (f"ratelimit:{bucket}:{window_seconds}s:{window}")
    )
    try:
        count = int(_incr_script()(keys=[key], args=[window_seconds + 5]))
    except redis.RedisError as exc:
        _record_fail_open(exc)
        return None
    if count > limit:
        return max(1.0, (window + 1) * window_seconds - now)
    return None


def over_limit(bucket: str, limit: int) -> float | None:
    """Like :func:`hit` without counting: the seconds to wait when ``bucket`` has already
    reached ``limit`` in this window, else None (also when Redis is unavailable)."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    try:
        raw = get_redis().get(f"ratelimit:{bucket}:{window}")
    except redis.RedisError as exc:
        _record_fail_open(exc)
        return None
    if raw is not None and int(raw) >= limit:
        return max(1.0, (window + 1) * WINDOW_SECONDS - now)
    return None


@dataclass(frozen=True)
class AddressFailures:
    """One address's failed tries of one kind (``auth-fail``, a webhook's signature that
    matches no account, a file URL that matches no file), counted per minute: past
    ``API_AUTH_FAILURE_LIMIT_PER_MINUTE`` the caller is refused (429) before anything is
    looked up or hashed. Successful tries are not counted. The one counter for every such
    check: ``failures_from(request, kind)``."""

    bucket: str
    limit: int

    def wait(self) -> float | None:
        """Seconds until this address may try again, or None when it is under the limit."""
        return over_limit(self.bucket, self.limit)

    def over(self) -> bool:
        return self.wait() is not None

    def hit(self) -> None:
        hit(self.bucket, self.limit)


def failures_from(request: HttpRequest | Request, kind: str) -> AddressFailures:
    """The failure counter of ``kind`` for the request's client address."""
    return AddressFailures(
        f"{kind}:{client_ip_from_meta(request.META)}",
        int(settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE),
    )


class PerClientRateThrottle(BaseThrottle):
    """API key → its own limit; signed-in user → the default; anonymous → per IP."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        auth = request.auth
        if isinstance(auth, ApiKey):
            bucket = f"key:{auth.pk}"
            limit = auth.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
        elif request.user and request.user.is_authenticated:
            bucket = f"user:{request.user.pk}"
            limit = settings.API_RATE_LIMIT_PER_MINUTE
        else:
            bucket = f"ip:{client_ip(request)}"
            limit = settings.API_ANON_RATE_LIMIT_PER_MINUTE
        self._wait = hit(bucket, limit)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class PerIPRateThrottle(BaseThrottle):
    """For unauthenticated endpoints such as webhooks: a limit per source IP."""

    limit_setting = "API_ANON_RATE_LIMIT_PER_MINUTE"

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = int(getattr(settings, self.limit_setting))
        self._wait = hit(f"ip:{client_ip(request)}", limit)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
