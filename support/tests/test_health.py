from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import override_settings

from support import health
from support.celery import app


@pytest.fixture(autouse=True)
def _fresh_celery_cache():
    health._celery_cache.update(at=0.0, result=None)
    yield
    health._celery_cache.update(at=0.0, result=None)


@pytest.mark.django_db
def test_health_is_503_when_redis_is_down(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["celery"]["status"] == "down"


@pytest.mark.django_db
def test_health_is_503_without_a_worker(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["celery"] == {"status": "down", "error": "no worker answered"}


@pytest.mark.django_db(transaction=True)
def test_health_is_200_with_a_live_worker(client):
    app.conf.task_always_eager = False
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
        response = client.get("/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert {name: part["status"] for name, part in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "celery": "ok",
    }


def test_health_needs_no_authentication_but_api_does(client, db):
    assert client.get("/health").status_code in (200, 503)
    assert client.get("/api/tickets").status_code == 401
