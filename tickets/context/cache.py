"""The customer-context cache: a small in-process LRU in front of the Django cache (Redis).

One Redis key per customer holding the built context and the customer's ``updated_at``
stamp: a profile edit anywhere (admin included) changes the stamp, so a stale entry is never
served; writes in this package delete the key after commit.

In front of it, seed 000's per-process LRU (``CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE`` entries,
each kept ``CUSTOMER_CONTEXT_LOCAL_CACHE_TTL`` seconds; size 0 switches it off) saves the
Redis round trip and the unpickling of the context on repeated reads (the workbench asks
for the same customer's context for every panel refresh). It is checked the same way:

- the stamp: the caller reads the customer row from the database on every request, so a
  profile edit made by any process is seen at once;
- the same invalidation events: ``context_invalidate`` (and the bulk import's
  ``context_invalidate_many``) drop the local entry as well as the Redis key, now and
  after commit;
- across processes, a short TTL: another process's invalidation (a new order, an
  interaction, a ticket) deletes the Redis key, which this process sees at the latest when
  its local entry expires (5 s by default). A version key in Redis would make that
  immediate, but checking it costs one Redis round trip per read, which is most of what
  the local cache exists to save; a few seconds of staleness on order and interaction
  lists is acceptable for a display, and the profile itself is never stale.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from support.lru import BoundedLRU

logger = logging.getLogger(__name__)

#: 2 since 2026-12-06: the entry holds the private part agents' figures are drawn from
#: (``selectors.VIEWER_KEY``); a version 1 entry, without it, is not read. 3 since
#: 2026-12-06 (later): each interaction, and each scored contact in that part, carries its
#: scope (``tickets.context.scopes``); a version 2 entry, without them, is not read.
KEY_VERSION = 3


def context_cache_key(customer_id: int) -> str:
    return f"customer-context:v{KEY_VERSION}:{customer_id}"


class LocalContextCache:
    """A thread-safe LRU of ``customer id -> (expires, stamp, context)``, sized by
    ``CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE`` read at each call (0: off)."""

    def __init__(self) -> None:
        self._entries: BoundedLRU[int, tuple[float, str, dict[str, Any]]] = BoundedLRU(
            max_entries=self._size
        )

    @staticmethod
    def _size() -> int:
        return max(0, int(settings.CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE))

    def get(self, customer_id: int, stamp: str) -> dict[str, Any] | None:
        entry = self._entries.get(customer_id)
        if entry is None:
            return None
        expires, cached_stamp, data = entry
        if time.monotonic() >= expires or cached_stamp != stamp:
            # Should another thread have just stored a fresh entry, this drops it too: one
            # more Redis read, never a stale context.
            self._entries.pop(customer_id)
            return None
        # A copy: callers may change what they get without changing the cached context.
        return copy.deepcopy(data)

    def set(self, customer_id: int, stamp: str, data: dict[str, Any]) -> None:
        if self._size() == 0:
            return
        expires = time.monotonic() + float(settings.CUSTOMER_CONTEXT_LOCAL_CACHE_TTL)
        self._entries.put(customer_id, (expires, stamp, copy.deepcopy(data)))

    def drop(self, customer_ids: Iterable[int]) -> None:
        for customer_id in customer_ids:
            self._entries.pop(customer_id)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


local_cache = LocalContextCache()


def context_cache_get(customer_id: int, *, stamp: str) -> dict[str, Any] | None:
    local = local_cache.get(customer_id, stamp)
    if local is not None:
        return local
    try:
        entry = cache.get(context_cache_key(customer_id))
    except Exception:  # noqa: BLE001 - a cache outage must not break the context
        logger.warning("Context cache read failed for customer %s", customer_id)
        return None
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    data = entry.get("data")
    if not isinstance(data, dict):
        return None
    local_cache.set(customer_id, stamp, data)
    return data


def context_cache_set(customer_id: int, *, stamp: str, data: dict[str, Any]) -> None:
    local_cache.set(customer_id, stamp, data)
    try:
        cache.set(
            context_cache_key(customer_id),
            {"stamp": stamp, "data": data},
            timeout=settings.CUSTOMER_CONTEXT_CACHE_TTL,
        )
    except Exception:  # noqa: BLE001
        logger.warning("Context cache write failed for customer %s", customer_id)


def context_invalidate(customer_id: int) -> None:
    """Drop the cached context (this process's and Redis's) now and again after the
    surrounding commit.

    The second delete closes the window in which a reader could cache the old state
    between our first delete and the commit.
    """

    def drop() -> None:
        local_cache.drop([customer_id])
        try:
            cache.delete(context_cache_key(customer_id))
        except Exception:  # noqa: BLE001
            logger.warning("Context cache delete failed for customer %s", customer_id)

    drop()
    transaction.on_commit(drop)


def context_invalidate_many(customer_ids: Iterable[int]) -> None:
    """``context_invalidate`` for many customers at once (bulk imports)."""
    ids = list(dict.fromkeys(customer_ids))
    keys = [context_cache_key(cid) for cid in ids]

    def drop() -> None:
        local_cache.drop(ids)
        for start in range(0, len(keys), 1000):
            try:
                cache.delete_many(keys[start : start + 1000])
            except Exception:  # noqa: BLE001
                logger.warning("Context cache delete failed for %s customers", len(keys))

    drop()
    transaction.on_commit(drop)
