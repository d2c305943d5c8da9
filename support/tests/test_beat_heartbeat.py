"""Celery beat's heartbeat (``support/beat.py``): each scheduled task beat sends writes the
time to Redis; ``/metrics`` exports its age (``support_beat_last_run_age_seconds``) and
``/health`` reports it (``beat``), reported, not checked.

Before 2026-12-07 a stopped beat was invisible: every alarm rule last evaluated hours ago,
``/health`` answered 200 ok and no metric mentioned beat."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery, beat
from celery.schedules import schedule
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from support import health
from support.beat import (
    BEAT_HEARTBEAT_KEY,
    BEAT_STALE_SECONDS,
    beat_heartbeat_record,
    beat_last_run_age,
)
from support.redis_client import get_redis

TOKEN = "beat-test-token-0123456789"


@pytest.fixture(autouse=True)
def _no_mark() -> Any:
    get_redis().delete(BEAT_HEARTBEAT_KEY)
    yield
    get_redis().delete(BEAT_HEARTBEAT_KEY)


@pytest.fixture
def worker_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker answers the ping (none runs here): the three checks are ok."""
    monkeypatch.setattr(health, "check_celery", lambda: {"status": "ok", "workers": 1})


def test_beat_marks_each_scheduled_task_it_sends_and_nothing_else() -> None:
    """Through Celery's own scheduler (its ``celery_beat_task`` header) on an in-memory
    broker: a task sent by beat leaves the mark, one sent by code does not."""
    app = Celery("beat-heartbeat-test", broker="memory://", set_as_current=False)

    @app.task(name="beat_heartbeat_test.tick", shared=False)
    def tick() -> None:
        return None

    tick.delay()  # code (a view, a worker) sending a task: not beat
    assert get_redis().get(BEAT_HEARTBEAT_KEY) is None
    assert beat_last_run_age() is None

    scheduler = beat.Scheduler(app=app, lazy=True)
    entry = scheduler.Entry(
        name="tick",
        task="beat_heartbeat_test.tick",
        schedule=schedule(timedelta(seconds=15)),
        app=app,
    )
    scheduler.apply_entry(entry)
    age = beat_last_run_age()
    assert age is not None
    assert 0 <= age < 5


@pytest.mark.django_db
def test_health_reports_beat_and_a_stale_beat_does_not_fail_it(
    client: Client, worker_up: None
) -> None:
    # never seen since Redis was emptied: stale, no age
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["beat"] == {"last_run_age_seconds": None, "stale": True}

    beat_heartbeat_record(at=time.time() - 3600)  # stopped an hour ago
    response = client.get("/health")
    assert response.status_code == 200  # reported, not checked
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "celery"}
    assert body["beat"]["stale"] is True
    assert 3599 <= body["beat"]["last_run_age_seconds"] < 3610

    beat_heartbeat_record(at=time.time() - BEAT_STALE_SECONDS + 30)  # within the bound
    assert client.get("/health").json()["beat"]["stale"] is False
    beat_heartbeat_record()
    beat_part = client.get("/health").json()["beat"]
    assert beat_part["stale"] is False
    assert beat_part["last_run_age_seconds"] < 5


@pytest.mark.django_db
def test_health_leaves_beat_empty_while_redis_is_down(client: Client, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    body = client.get("/health").json()
    assert body["checks"]["redis"]["status"] == "down"
    assert body["beat"] == {}


def _beat_samples(client: Client) -> list[float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    families = {
        family.name: family for family in text_string_to_metric_families(response.content.decode())
    }
    up = {
        sample.labels["source"]: sample.value
        for sample in families["support_metrics_source_up"].samples
    }
    assert up["beat"] == 1
    return [sample.value for sample in families["support_beat_last_run_age_seconds"].samples]


@pytest.mark.django_db
def test_metrics_export_the_age_of_the_mark(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert _beat_samples(client) == []  # no mark: no sample ("no data", absent())
    beat_heartbeat_record(at=time.time() - 600)
    (age,) = _beat_samples(client)
    assert 599 <= age < 610
