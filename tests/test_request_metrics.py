"""Request counts and latency by route (support/request_metrics.py): route patterns, never
paths; the webhook fast path counted like the Django view; several web processes summed
through prometheus_client's multiprocess mode; /metrics scraped by a task's IP address."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from channels_app.api.fastpath import WebhookFastPath
from channels_app.tests.conftest import make_account, wa_body
from channels_app.tests.test_fastpath import Fallback, _call, _signed
from support import request_metrics
from tests.test_metrics import TOKEN, scrape, value

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = "support_http_requests"
DURATION = "support_http_request_duration_seconds"


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture(autouse=True)
def fresh_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counters of this test only (they are per process and live as long as it)."""
    registry = request_metrics.CollectorRegistry(auto_describe=False)
    monkeypatch.setattr(request_metrics, "_registry", registry)
    monkeypatch.setattr(request_metrics, "_children", {})
    for name in ("REQUESTS", "DURATION", "WEBSOCKETS", "WEBSOCKETS_OPEN"):
        old = getattr(request_metrics, name)
        kwargs: dict[str, Any] = {"registry": registry}
        if name == "DURATION":
            kwargs["buckets"] = request_metrics.BUCKETS_SECONDS
        if name == "WEBSOCKETS_OPEN":
            kwargs["multiprocess_mode"] = "livesum"
        new = type(old)(old._name, old._documentation, old._labelnames, **kwargs)
        monkeypatch.setattr(request_metrics, name, new)
    monkeypatch.delenv(request_metrics.MULTIPROC_ENV, raising=False)


def requests(families: dict[str, Any], **labels: str) -> float:
    return value(families, REQUESTS, f"{REQUESTS}_total", **labels)


def test_routes_are_patterns_and_unknown_paths_are_grouped(client: Client, token: str) -> None:
    client.get("/api/tickets/T-4711-secret")  # no credentials: refused, still counted
    client.get("/api/tickets/T-4712-secret")
    client.get("/no/such/page/98765")
    client.get("/wp-login.php")
    client.get("/health/live")
    client.generic("BREW", "/health/live")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    text = response.content.decode()
    for raw in ("T-4711", "98765", "wp-login"):
        assert raw not in text  # never a path, an id or a probe for a file
    families = scrape(client, token)
    ticket = {"route": "api/tickets/<str:ticket_id>", "method": "GET"}
    statuses = {
        labels["status"]: n
        for key, n in families[REQUESTS].items()
        if (labels := dict(key)).get("route") == ticket["route"]
    }
    assert sum(statuses.values()) == 2
    assert set(statuses) <= {"401", "403"}
    assert requests(families, route="unmatched", method="GET", status="404") == 2
    assert requests(families, route="health/live", method="GET", status="200") == 1
    assert requests(families, route="health/live", method="other", status="405") == 1
    # The first scrape (it is a request too) was counted before the second answered.
    assert requests(families, route="metrics", method="GET", status="200") == 1
    count = value(families, DURATION, f"{DURATION}_count", **ticket)
    assert count == 2
    assert value(families, DURATION, f"{DURATION}_bucket", le="+Inf", **ticket) == 2
    assert value(families, DURATION, f"{DURATION}_sum", **ticket) > 0


def test_scraped_by_a_task_ip_address_with_the_token(
    client: Client, token: str, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["desk.example.com"]
    address: dict[str, Any] = {"HTTP_HOST": "10.0.3.7:8000"}
    assert client.get("/metrics", **address).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **address).status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **address)
    assert response.status_code == 200
    assert b"support_metrics_source_up" in response.content
    # Every other path still goes through the host check.
    assert client.get("/login/", **address).status_code == 400


@pytest.mark.django_db(transaction=True)  # the fast path's thread has its own connection
def test_the_webhook_fast_path_counts_under_the_django_route(
    client: Client, token: str, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    account = make_account("whatsapp")
    app = WebhookFastPath(Fallback(), threads=1)
    body = wa_body("34600000009", "wamid.metrics1", "hola")
    status, _, _ = _call(app, account.webhook_path, body, headers=_signed(body))
    assert status == 200
    status, _, _ = _call(app, account.webhook_path, body, headers={"X-Hub-Signature-256": "x"})
    assert status in (401, 403)
    families = scrape(client, token)
    route = "api/webhooks/<str:channel>/<str:token>"
    assert requests(families, route=route, method="POST", status="200") == 1
    assert requests(families, route=route, method="POST", status=str(status)) == 1
    assert value(families, DURATION, f"{DURATION}_count", route=route, method="POST") == 2
    assert account.webhook_path.rsplit("/", 1)[1] not in str(families[REQUESTS])


WEB_PROCESS = textwrap.dedent(
    """
    import django
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    from django.test import Client

    from support.request_metrics import WEBSOCKETS, WEBSOCKETS_OPEN

    client = Client()
    for _ in range({n}):
        assert client.get("/health/live").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    WEBSOCKETS.inc()
    WEBSOCKETS_OPEN.inc()  # still open when the process ends: a worker that died
    """
)


def test_several_web_processes_are_summed(
    client: Client, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes in multiprocess mode serve requests; a scrape in a third sees both."""
    env = {**os.environ, request_metrics.MULTIPROC_ENV: str(tmp_path)}
    env.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    for n in (2, 3):
        subprocess.run(
            [sys.executable, "-c", WEB_PROCESS.format(n=n)], cwd=ROOT, env=env, check=True
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    monkeypatch.setenv(request_metrics.MULTIPROC_ENV, str(tmp_path))
    families = scrape(client, token)
    assert requests(families, route="health/live", method="GET", status="200") == 5
    assert requests(families, route="unmatched", method="GET", status="404") == 2
    live = {"route": "health/live", "method": "GET"}
    assert value(families, DURATION, f"{DURATION}_count", **live) == 5
    # This process's own requests are not in multiprocess mode: not in the files.
    assert ("route", "metrics") not in {p for key in families[REQUESTS] for p in key}
    assert (
        value(families, "support_websocket_connections", "support_websocket_connections_total") == 2
    )
    # Both processes have exited: their open connections are gone with them.
    assert not families.get("support_websocket_connections_open")
    assert not list(tmp_path.glob("gauge_live*"))
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # counters are kept


def test_the_web_process_gets_an_empty_metrics_directory(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import processes

    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"old")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    env = processes.metrics_dir_prepare({"PATH": "/bin"}, default=tmp_path)
    assert env == {"PATH": "/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert not stale.exists()
    assert keep.exists()
    chosen = tmp_path / "chosen"
    env = processes.metrics_dir_prepare({"PROMETHEUS_MULTIPROC_DIR": str(chosen)}, default="/x")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(chosen)
    assert chosen.is_dir()


def test_dead_process_cleanup_keeps_live_gauges(tmp_path: Path) -> None:
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    assert request_metrics.dead_process_cleanup(str(tmp_path)) == []
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()


def test_text_parses(client: Client, token: str) -> None:
    client.get("/health/live")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    names = {f.name for f in text_string_to_metric_families(response.content.decode())}
    assert {REQUESTS, DURATION, "support_websocket_connections_open"} <= names


# --- requests per minute in Redis: what the alarm evaluator (a Celery worker) reads ------


@pytest.fixture
def minute_tally(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """This process's tally starts empty, no flushing thread runs (the test flushes), the
    per-minute keys in Redis are gone; yields the list of Redis writes of the tally."""
    from support import window_counts
    from support.redis_client import get_redis

    monkeypatch.setattr(request_metrics, "_tally", {})
    monkeypatch.setattr(request_metrics, "_flusher_started", True)
    writes: list[Any] = []
    real_add = window_counts.window_counts_add

    def add(key: str, counts: Any, *, keep_seconds: int) -> None:
        writes.append({minute: dict(fields) for minute, fields in counts.items()})
        real_add(key, counts, keep_seconds=keep_seconds)

    monkeypatch.setattr(request_metrics, "window_counts_add", add)
    client = get_redis()
    for key in client.scan_iter("metrics:http:*"):
        client.delete(key)
    yield writes
    for key in client.scan_iter("metrics:http:*"):
        client.delete(key)


WEB_PROCESS_5XX = textwrap.dedent(
    """
    import django

    django.setup()
    from support.request_metrics import request_record

    for _ in range(95):
        request_record("inbox", "GET", 200, 0.01)
    for _ in range(5):
        request_record("inbox", "GET", 503, 0.01)
    """
)


def _seed_rule(name: str) -> Any:
    """The seed rule as the migrations leave it (a transactional test elsewhere may have
    flushed the migrations' rows on a reused test database: put them back)."""
    import importlib

    from django.apps import apps

    from alerts.models import AlertRule

    for module, function in (
        ("0001_alert_rules_alerts_targets", "seed_rules_create"),
        ("0002_call_bedrock_failures_metric", "rule_metric_update"),
        ("0003_http_5xx_rate_from_redis_counts", "rule_source_update"),
    ):
        getattr(importlib.import_module(f"alerts.migrations.{module}"), function)(apps, None)
    return AlertRule.objects.get(name=name)


def test_http_5xx_rate_fires_on_the_requests_of_another_process(
    tmp_path: Path, minute_tally: list[Any]
) -> None:
    """Review r5: the rule is evaluated by a Celery worker (another process, another ECS
    task); the web process's requests reach it through Redis, not the worker's own
    counters. The web process here answers 100 requests, 5 of them 503 (5 % > 1 %) and
    exits (a clean exit adds its tally; a running one adds it every few seconds)."""
    from django.utils import timezone

    from alerts.models import Alert, RuleEvaluation
    from alerts.services import rule_evaluate
    from support.metrics import metrics_collect

    rule = _seed_rule("Http5xxRate")
    env = {**os.environ, request_metrics.MULTIPROC_ENV: str(tmp_path)}
    env.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    subprocess.run(
        [sys.executable, "-c", WEB_PROCESS_5XX], cwd=ROOT, env=env, check=True, timeout=120
    )
    rule_evaluate(rule, metrics_collect(window_seconds=rule.window_seconds), now=timezone.now())
    evaluation = RuleEvaluation.objects.get(rule=rule)
    assert (evaluation.raw_numerator, evaluation.raw_denominator, evaluation.value) == (
        5,
        100,
        0.05,
    )
    alert = Alert.objects.get(fingerprint=rule.fingerprint)
    assert (alert.severity, alert.value) == ("critical", 0.05)
    assert minute_tally == []  # nothing of this process's


def test_requests_are_counted_in_memory_and_added_to_redis_in_one_write(
    client: Client, minute_tally: list[Any]
) -> None:
    """The hot path never waits for Redis: 30 requests, no write; the flush (the thread's,
    every FLUSH_SECONDS) adds them all in one pipelined write, per minute."""
    from support.metrics import metrics_collect

    for _ in range(28):
        assert client.get("/health/live").status_code == 200
    request_metrics.request_record("api/tickets", "POST", 500, 0.01)
    request_metrics.request_record("api/tickets", "POST", 502, 0.01)
    assert minute_tally == []
    assert request_metrics.minute_counts_flush() is True
    [write] = minute_tally
    assert sum(f["n"] for f in write.values()) == 30
    assert sum(f["5xx"] for f in write.values()) == 2
    assert request_metrics.minute_counts_flush() is True  # nothing new: no write
    assert len(minute_tally) == 1
    families = {f.name: f for f in metrics_collect(window_seconds=300)}
    [requests_in_window] = families["support_http_window_requests"].samples
    [errors_in_window] = families["support_http_window_errors"].samples
    assert (requests_in_window.value, errors_in_window.value) == (30, 2)


def test_counts_older_than_the_window_are_left_out(minute_tally: list[Any]) -> None:
    import time

    from support.metrics import metrics_collect

    now = time.time()
    request_metrics.minute_count(503, at=now - 600)  # ten minutes ago
    request_metrics.minute_count(200, at=now)
    request_metrics.minute_counts_flush()
    five = {f.name: f.samples[0].value for f in metrics_collect(window_seconds=300)
            if f.name.startswith("support_http_window_")}  # fmt: skip
    hour = {f.name: f.samples[0].value for f in metrics_collect(window_seconds=3600)
            if f.name.startswith("support_http_window_")}  # fmt: skip
    assert five == {"support_http_window_requests": 1, "support_http_window_errors": 0}
    assert hour == {"support_http_window_requests": 2, "support_http_window_errors": 1}


def test_redis_down_loses_the_count_not_the_request(
    client: Client, minute_tally: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from support import window_counts

    def down() -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(window_counts, "get_redis", down)
    assert client.get("/health/live").status_code == 200
    assert request_metrics.minute_counts_flush() is False
    assert request_metrics._tally == {}  # dropped, not retried against a request
    monkeypatch.undo()


def test_a_forked_child_starts_with_an_empty_tally(minute_tally: list[Any]) -> None:
    request_metrics.minute_count(200)
    request_metrics._after_fork()
    assert request_metrics._tally == {}
    assert request_metrics._flusher_started is False


def test_the_flushing_thread_waits_on_an_event_not_on_time_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test elsewhere patches ``time.sleep`` (a no-op that records its calls): the
    process's flushing thread, started by any earlier request, then spun, flushing and
    recording thousands of times a second (a CI run's SQS back-off test saw 19,277
    "sleeps"). It waits on its stop event instead."""
    import threading
    import time as time_module

    sleeps: list[float] = []
    flushes: list[int] = []
    monkeypatch.setattr(time_module, "sleep", sleeps.append)
    monkeypatch.setattr(request_metrics, "FLUSH_SECONDS", 0.05)
    monkeypatch.setattr(request_metrics, "_stop", threading.Event())
    monkeypatch.setattr(request_metrics, "minute_counts_flush", lambda: flushes.append(1))
    thread = threading.Thread(target=request_metrics._flush_loop, daemon=True)
    thread.start()
    request_metrics._stop.wait(0.3)
    request_metrics._stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert sleeps == []
    # about 6 at 0.05 s over 0.3 s; more when the machine is busy (a CI run saw 11), and
    # thousands when the loop spins: the bound tells the two apart, not the timing
    assert 1 <= len(flushes) <= 100
