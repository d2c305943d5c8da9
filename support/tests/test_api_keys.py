"""Invalid API keys: a bounded negative cache and a per-IP limit on failed attempts."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from support import services
from support.auth import authentication
from support.services import api_key_create, hash_api_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    services.known_api_keys.clear()
    getattr(services, "unknown_api_keys", {}).clear()
    yield
    services.known_api_keys.clear()
    getattr(services, "unknown_api_keys", {}).clear()


def _cached_entries() -> int:
    return len(services.known_api_keys) + len(getattr(services, "unknown_api_keys", {}))


def test_random_invalid_keys_do_not_grow_the_cache_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "API_KEY_NEGATIVE_CACHE_SIZE", 50)
    for _ in range(200):
        assert authentication._lookup(hash_api_key(secrets.token_urlsafe(24))) is None
    assert _cached_entries() == 50


def test_an_unknown_key_is_still_remembered_briefly(
    django_assert_num_queries: Any, agent: Any
) -> None:
    unknown = hash_api_key("sk_nope")
    with django_assert_num_queries(1):
        assert authentication._lookup(unknown) is None
        assert authentication._lookup(unknown) is None
    # A key created with that very value is usable at once (creation forgets the miss).
    key, raw = api_key_create(name="k", user=agent)
    assert authentication._lookup(hash_api_key(raw)) == key


def _get(client: APIClient, key: str, ip: str = "127.0.0.1") -> int:
    return client.get(
        "/api/tickets", HTTP_AUTHORIZATION=f"Api-Key {key}", REMOTE_ADDR=ip
    ).status_code


def test_many_failed_keys_from_one_address_get_429(settings: Any, agent: Any) -> None:
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 3
    client = APIClient()
    _, raw = api_key_create(name="k", user=agent)
    assert _get(client, raw) == 200  # a client in use, on the same address
    guesses = [_get(client, "sk_" + secrets.token_urlsafe(24)) for _ in range(5)]
    assert guesses == [401, 401, 401, 429, 429]
    response = client.get("/api/tickets", HTTP_AUTHORIZATION="Api-Key sk_another_guess")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"
    # The key this process has just seen succeed keeps working; other addresses are unaffected.
    assert _get(client, raw) == 200
    services.known_api_keys.clear()
    assert _get(client, raw) == 429  # not vouched for: no lookup from this address now
    assert _get(client, raw, ip="198.51.100.7") == 200
