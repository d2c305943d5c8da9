"""Rate limits per API key, per user and per IP: a fixed one-minute window in Redis.

Over the limit the API answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from support.models import ApiKey
from support.redis_client import get_redis

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60


def client_ip(request: Request) -> str:
    return client_ip_from_meta(request.META)


def client_ip_from_meta(meta: Mapping[str, Any]) -> str:
    # Behind a load balancer the first X-Forwarded-For hop is the client (only when
    # the proxy is trusted, which TRUST_X_FORWARDED_FOR turns on).
    if getattr(settings, "TRUST_X_FORWARDED_FOR", False):
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return str(forwarded).split(",")[0].strip()
    return str(meta.get("REMOTE_ADDR", "unknown"))


# Count and set the expiry in one command (a MULTI/EXEC pipeline costs twice the CPU here).
_INCR_WITH_EXPIRY = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@cache
def _incr_script() -> Any:
    return get_redis().register_script(_INCR_WITH_EXPIRY)


def hit(bucket: str, limit: int) -> float | None:
    """Count one request in ``bucket``; the seconds to wait when over ``limit``, else None."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"ratelimit:{bucket}:{window}"
    try:
        count = int(_incr_script()(keys=[key], args=[WINDOW_SECONDS + 5]))
    except redis.RedisError:
        logger.warning("Rate limiter unavailable (Redis); allowing the request")
        return None
    if count > limit:
        return max(1.0, (window + 1) * WINDOW_SECONDS - now)
    return None


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
