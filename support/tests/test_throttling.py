"""Client addresses behind proxies, and the rate limiter when Redis is down."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from support import throttling
from support.redis_client import get_redis


def meta(remote: str, forwarded: str | None = None) -> dict[str, str]:
    out = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        out["HTTP_X_FORWARDED_FOR"] = forwarded
    return out


def test_without_trusted_proxies_the_socket_address_is_the_client(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 0
    settings.TRUSTED_PROXY_CIDRS = []
    assert throttling.client_ip_from_meta(meta("198.51.100.7", "203.0.113.1")) == "198.51.100.7"


def test_behind_one_proxy_the_right_most_untrusted_address_is_the_client(settings: Any) -> None:
    # What the deploy files configured before: TRUST_X_FORWARDED_FOR with one load balancer.
    settings.TRUST_X_FORWARDED_FOR = True
    settings.TRUSTED_PROXY_HOPS = 1
    settings.TRUSTED_PROXY_CIDRS = []
    # The client sent "X-Forwarded-For: 1.2.3.4"; the load balancer appended what it saw.
    spoofed = meta("10.0.1.20", "1.2.3.4, 198.51.100.7")
    assert throttling.client_ip_from_meta(spoofed) == "198.51.100.7"
    assert throttling.client_ip_from_meta(meta("10.0.1.20", "198.51.100.7")) == "198.51.100.7"
    # Nothing forwarded (a request that did not cross the proxy): the peer itself.
    assert throttling.client_ip_from_meta(meta("10.0.1.20")) == "10.0.1.20"


def test_hops_count_from_the_socket_peer(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 2  # load balancer + nginx on the instance
    settings.TRUSTED_PROXY_CIDRS = []
    chain = meta("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.1.20")
    assert throttling.client_ip_from_meta(chain) == "198.51.100.7"


def test_trusted_networks_are_skipped_from_the_right(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 0
    settings.TRUSTED_PROXY_CIDRS = ["10.0.0.0/16", "2001:db8::/32"]
    chain = meta("10.0.2.9", "6.6.6.6, [2001:db8::1]:443, 198.51.100.7:5678, 10.0.1.5")
    assert throttling.client_ip_from_meta(chain) == "198.51.100.7"
    # A peer outside the trusted networks is the client, whatever it forwards.
    assert throttling.client_ip_from_meta(meta("203.0.113.9", "6.6.6.6")) == "203.0.113.9"
    v6 = meta("10.0.2.9", "2001:db8::5, 2a00:1450::1")
    assert throttling.client_ip_from_meta(v6) == "2a00:1450::1"


@pytest.mark.django_db
def test_spoofed_forwarded_for_does_not_escape_the_per_ip_limit(client: Any, settings: Any) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    settings.TRUSTED_PROXY_HOPS = 1
    settings.TRUSTED_PROXY_CIDRS = []
    settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE = 2
    codes = [
        client.post(
            "/api/webhooks/whatsapp/no-such-token",
            data=b"{}",
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 198.51.100.7",
        ).status_code
        for n in range(4)
    ]
    assert codes == [404, 404, 429, 429]


@pytest.fixture
def redis_down() -> Iterator[None]:
    """Point the limiter at a port nobody listens on (a refused connection)."""
    get_redis.cache_clear()
    throttling._incr_script_for.cache_clear()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        yield
    get_redis.cache_clear()
    throttling._incr_script_for.cache_clear()


def test_redis_down_allows_but_logs_and_counts(
    redis_down: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttling, "FAIL_OPEN_LOG_EVERY_SECONDS", 0.0)  # log every one
    before = throttling.fail_open_count()
    with caplog.at_level(logging.ERROR, logger="support.throttling"):
        assert throttling.hit("ip:198.51.100.7", 0) is None  # over a zero limit, yet allowed
        assert throttling.hit("ip:198.51.100.7", 0) is None
    assert throttling.fail_open_count() == before + 2
    lines = [r.getMessage() for r in caplog.records if r.name == "support.throttling"]
    assert len(lines) == 2
    assert lines[1] == (
        "Rate limiter unavailable (Redis: ConnectionError); request allowed unchecked "
        f"({before + 2} allowed unchecked by this process so far)"
    )


@pytest.mark.django_db
def test_health_reports_the_fail_open_count(client: Any, redis_down: None) -> None:
    throttling.hit("ip:198.51.100.7", 0)
    body = client.get("/health").json()
    assert body["counters"]["rate_limit_fail_open"] == throttling.fail_open_count() >= 1
