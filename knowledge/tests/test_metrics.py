"""KB search latency and zero-result rate: every search through the one search service
(API, ticket suggestions, drafts) is counted in Redis and exported by the ``knowledge``
metric source."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import Client

from knowledge import metrics as kb_metrics
from knowledge.selectors import kb_search
from knowledge.tests.test_api import kb, ticket  # noqa: F401  (fixtures)
from support.redis_client import get_redis
from tests.test_metrics import TOKEN, scrape, value

pytestmark = pytest.mark.django_db

SECONDS = "support_kb_search_seconds"


@pytest.fixture(autouse=True)
def no_counts() -> Iterator[None]:
    client = get_redis()
    keys = list(client.scan_iter("metrics:kb-search:*"))
    if keys:
        client.delete(*keys)
    yield
    keys = list(client.scan_iter("metrics:kb-search:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def test_api_and_suggestions_searches_are_counted(
    agent_client: Any,
    kb: Any,  # noqa: F811
    ticket: Any,  # noqa: F811
    client: Client,
    token: str,
) -> None:
    families = scrape(client, token)
    assert value(families, "support_kb_searches") == 0
    # no search yet: no rate (before, 0: "every search found something")
    assert not families["support_kb_search_zero_result_rate"]

    assert agent_client.get("/api/kb/search", {"q": "refund card"}).json()["results"]
    nothing = agent_client.get("/api/kb/search", {"q": "refund", "tag": "no-such-tag"})
    assert nothing.json()["results"] == []
    assert agent_client.get(f"/api/tickets/{ticket.pk}/suggestions").status_code == 200
    # The ticket page's suggestions are cached per ticket state: no second search.
    assert agent_client.get(f"/api/tickets/{ticket.pk}/suggestions").status_code == 200

    families = scrape(client, token)
    assert value(families, "support_metrics_source_up", source="knowledge") == 1
    assert value(families, "support_kb_searches") == 3
    assert value(families, "support_kb_search_zero_results") == 1
    assert value(families, "support_kb_search_zero_result_rate") == pytest.approx(1 / 3)
    assert value(families, SECONDS, f"{SECONDS}_count") == 3
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="+Inf") == 3
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="5.0") <= 3
    assert value(families, SECONDS, f"{SECONDS}_sum") > 0


def test_buckets_are_cumulative_and_the_window_is_respected(
    client: Client, token: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour = int(time.time() // 3600)
    monkeypatch.setattr(kb_metrics, "_current_hour", lambda: hour)  # no hour change mid-test
    kb_metrics.kb_search_record(seconds=0.004, results=2)
    kb_metrics.kb_search_record(seconds=0.2, results=0)
    kb_metrics.kb_search_record(seconds=60.0, results=1)
    old = kb_metrics.KEY.format(bucket=hour - 3)
    get_redis().hset(old, mapping={"n": 5, "zero": 5, "b0": 5, "sum": 0.01})
    settings.METRICS_WINDOW_SECONDS = 3600  # the current hour only
    families = scrape(client, token)
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="0.01") == 1
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="0.25") == 2
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="5.0") == 2
    assert value(families, SECONDS, f"{SECONDS}_bucket", le="+Inf") == 3
    assert value(families, SECONDS, f"{SECONDS}_sum") == pytest.approx(60.204)
    assert value(families, "support_kb_search_zero_result_rate") == pytest.approx(1 / 3)
    settings.METRICS_WINDOW_SECONDS = 4 * 3600
    families = scrape(client, token)
    assert value(families, "support_kb_searches") == 8
    assert value(families, "support_kb_search_zero_results") == 6
    assert get_redis().ttl(kb_metrics.KEY.format(bucket=hour)) > 0


def test_a_search_goes_on_when_redis_is_down(
    kb: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down() -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr("support.window_counts.get_redis", down)
    assert kb_search("refund card")
