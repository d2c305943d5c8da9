"""Seed 000's in-process LRU in front of the Redis context cache: bounded, expiring,
invalidated by the same events, and another process's invalidation seen within its TTL."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from tickets.context import cache as context_cache
from tickets.context.cache import context_cache_key, local_cache
from tickets.context.selectors import customer_context_get
from tickets.context.tests.test_context_api import _order
from tickets.models import Customer

pytestmark = pytest.mark.django_db


class RedisReads:
    """Counts the context reads that reach the Django cache (Redis)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        real = cache.get

        def get(key: str, *args: Any, **kwargs: Any) -> Any:
            if key.startswith("customer-context:"):
                self.keys.append(key)
            return real(key, *args, **kwargs)

        monkeypatch.setattr(cache, "get", get)


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(context_cache.time, "monotonic", lambda: self.now)


@pytest.fixture
def lru(settings: Any) -> Any:
    settings.CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE = 2
    settings.CUSTOMER_CONTEXT_LOCAL_CACHE_TTL = 5.0
    return settings


def _customer(name: str) -> Customer:
    return Customer.objects.create(name=name, email=f"{name.lower()}@example.org")


def test_repeated_reads_are_served_in_process_without_redis(
    lru: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = _customer("Ada")
    first = customer_context_get(customer)
    reads = RedisReads(monkeypatch)
    second = customer_context_get(customer)
    assert second == first
    assert reads.keys == []  # the local LRU answered
    second["orders"]["count"] = 99  # a caller's change does not reach the cache
    assert customer_context_get(customer)["orders"]["count"] == 0


def test_the_same_events_invalidate_the_local_entry(lru: Any) -> None:
    customer = _customer("Ada")
    assert customer_context_get(customer)["orders"]["count"] == 0
    _order(customer, "ORD-1")  # order_upsert -> context_invalidate
    assert customer_context_get(customer)["orders"]["count"] == 1
    customer.name = "Ada King"
    customer.save()  # no explicit invalidation: the stamp changes
    assert customer_context_get(customer)["customer"]["name"] == "Ada King"


def test_entries_expire_and_the_least_recently_used_is_evicted(
    lru: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    a, b, c = _customer("Ada"), _customer("Bob"), _customer("Cy")
    for customer in (a, b, a, c):  # c evicts b (a was used more recently)
        customer_context_get(customer)
    assert len(local_cache) == 2
    reads = RedisReads(monkeypatch)
    customer_context_get(a)
    customer_context_get(c)
    assert reads.keys == []
    customer_context_get(b)
    assert reads.keys == [context_cache_key(b.pk)]
    clock.now += 5.0  # the TTL
    customer_context_get(a)
    assert reads.keys[-1] == context_cache_key(a.pk)


def test_another_process_invalidation_is_seen_within_the_ttl(
    lru: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    customer = _customer("Ada")
    assert customer_context_get(customer)["orders"]["count"] == 0
    # Another process adds an order: its context_invalidate deletes the Redis key; this
    # process's local entry is not reachable from there.
    local_before = local_cache.get(customer.pk, customer.updated_at.isoformat())
    _order(customer, "ORD-7")
    local_cache.set(customer.pk, customer.updated_at.isoformat(), local_before or {})
    assert cache.get(context_cache_key(customer.pk)) is None
    assert customer_context_get(customer)["orders"]["count"] == 0  # within the TTL
    clock.now += 5.0
    assert customer_context_get(customer)["orders"]["count"] == 1


def test_size_zero_switches_the_local_cache_off(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE = 0
    customer = _customer("Ada")
    customer_context_get(customer)
    reads = RedisReads(monkeypatch)
    customer_context_get(customer)
    assert reads.keys == [context_cache_key(customer.pk)]
    assert len(local_cache) == 0


def test_bulk_import_invalidation_drops_local_entries(lru: Any) -> None:
    from tickets.context.cache import context_invalidate_many

    customer = _customer("Ada")
    customer_context_get(customer)
    assert len(local_cache) == 1
    context_invalidate_many([customer.pk])
    assert len(local_cache) == 0


def test_a_merge_or_an_identity_move_is_seen_in_both_cached_contexts(lru: Any) -> None:
    """A customer with orders but no ticket merged into another sends no ticket event, and
    a supervisor's identity move none at all: the cached contexts (local and Redis) kept
    the old orders and identities for the cache's TTL (300 s). Both now change the
    customers' ``updated_at``, the stamp a cached context is served with."""
    from tickets.models import ChannelIdentity
    from tickets.services import channel_identity_move, customer_merge

    ada, bob, cy = _customer("Ada"), _customer("Bob"), _customer("Cy")
    _order(bob, "ORD-9")  # Bob has an order and no ticket

    def context(customer: Customer) -> dict[str, Any]:
        return customer_context_get(Customer.objects.get(pk=customer.pk))  # as a request reads

    assert context(ada)["orders"]["count"] == 0  # cached now
    customer_merge(source=bob, target=ada, reason="same person")
    assert context(ada)["orders"]["count"] == 1

    identity = ChannelIdentity.objects.create(
        customer=ada, channel="whatsapp", external_id="447700900001"
    )
    ada.save()  # as the admin's inline would
    assert [i["external_id"] for i in context(ada)["identities"]] == ["447700900001"]
    assert context(cy)["identities"] == []
    channel_identity_move(identity=identity, customer=cy, previous=ada, actor=None)
    assert context(ada)["identities"] == []
    assert [i["external_id"] for i in context(cy)["identities"]] == ["447700900001"]
