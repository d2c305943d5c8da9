"""The customer-context cache (Django cache, i.e. Redis).

One key per customer holding the built context and the customer's ``updated_at`` stamp:
a profile edit anywhere (admin included) changes the stamp, so a stale entry is never
served; writes in this package delete the key after commit.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

KEY_VERSION = 1


def context_cache_key(customer_id: int) -> str:
    return f"customer-context:v{KEY_VERSION}:{customer_id}"


def context_cache_get(customer_id: int, *, stamp: str) -> dict[str, Any] | None:
    try:
        entry = cache.get(context_cache_key(customer_id))
    except Exception:  # noqa: BLE001 - a cache outage must not break the context
        logger.warning("Context cache read failed for customer %s", customer_id)
        return None
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    data = entry.get("data")
    return data if isinstance(data, dict) else None


def context_cache_set(customer_id: int, *, stamp: str, data: dict[str, Any]) -> None:
    try:
        cache.set(
            context_cache_key(customer_id),
            {"stamp": stamp, "data": data},
            timeout=settings.CUSTOMER_CONTEXT_CACHE_TTL,
        )
    except Exception:  # noqa: BLE001
        logger.warning("Context cache write failed for customer %s", customer_id)


def context_invalidate(customer_id: int) -> None:
    """Drop the cached context now and again after the surrounding commit.

    The second delete closes the window in which a reader could cache the old state
    between our first delete and the commit.
    """

    def drop() -> None:
        try:
            cache.delete(context_cache_key(customer_id))
        except Exception:  # noqa: BLE001
            logger.warning("Context cache delete failed for customer %s", customer_id)

    drop()
    transaction.on_commit(drop)
