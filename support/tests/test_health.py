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


# --- Probes: /health/live and /health/ready ------------------------------------------------

#: What production sets (support/settings.py with ENVIRONMENT=prod): only the domain is an
#: allowed host, plain HTTP is redirected to HTTPS.
PRODUCTION_HOSTS = override_settings(
    ALLOWED_HOSTS=["support.example.com"],
    SECURE_SSL_REDIRECT=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    DEBUG=False,
)
ALB_CHECK = {"HTTP_HOST": "10.0.12.34:8000", "HTTP_USER_AGENT": "ELB-HealthChecker/2.0"}


@pytest.mark.django_db
@PRODUCTION_HOSTS
def test_load_balancer_check_with_an_ip_host_is_200_from_ready(client):
    """The ALB sends the target's IP as Host over plain HTTP; the probe must answer it."""
    response = client.get("/health/ready", **ALB_CHECK)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert "celery" not in body["checks"]
    assert "no-cache" in response["Cache-Control"]
    assert "Set-Cookie" not in response


@pytest.mark.django_db
@PRODUCTION_HOSTS
def test_every_health_path_answers_any_host(client):
    assert client.get("/health/live", HTTP_HOST="127.0.0.1:8000").json() == {"status": "ok"}
    assert client.get("/health", **ALB_CHECK).status_code == 503  # no worker here: reported
    assert client.get("/health/ready", HTTP_HOST="[fd00::7]:8000").status_code == 200


@pytest.mark.django_db
@PRODUCTION_HOSTS
def test_other_paths_with_an_unknown_host_are_still_refused(client):
    for path in ("/accounts/login/", "/api/tickets", "/health/", "/health/readyx", "/"):
        response = client.get(path, HTTP_HOST="10.0.12.34:8000", HTTP_X_FORWARDED_PROTO="https")
        assert response.status_code == 400, path
    # The probe paths are exact: a prefix or a query string does not open anything else.
    assert client.get("/health/ready/x", HTTP_HOST="10.0.12.34").status_code == 400
    # The right host still works (and plain HTTP is still redirected to HTTPS).
    response = client.get("/accounts/login/", HTTP_HOST="support.example.com")
    assert response.status_code == 301
    assert response["Location"] == "https://support.example.com/accounts/login/"


@pytest.mark.django_db
def test_ready_stays_200_with_no_celery_worker_and_redis_down(client, monkeypatch):
    def no_worker_asked():
        raise AssertionError("readiness must not ask Celery workers")

    monkeypatch.setattr(health, "check_celery", no_worker_asked)
    assert client.get("/health/ready").status_code == 200
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/health/ready")
        assert client.get("/health").status_code == 503  # the full report still says so
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["status"] == "down"


@pytest.mark.django_db
def test_ready_is_503_when_the_database_is_down(client, monkeypatch):
    monkeypatch.setattr(health, "check_database", lambda: {"status": "down", "error": "X"})
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    # Liveness does not depend on the database: a restart would not fix it.
    assert client.get("/health/live").status_code == 200


def test_probes_need_no_authentication(client, db):
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_one_celery_ping_at_a_time_the_others_answer_with_the_last_result(monkeypatch):
    """A burst of /health requests after the cached answer expires: one pings the workers,
    the others answer at once with the last result instead of each waiting on a ping."""
    import threading

    from support.celery import app as celery_app

    health._celery_cache.update(at=0.0, result={"status": "ok", "workers": 1})  # expired
    pinging = threading.Event()
    release = threading.Event()
    pings = []

    def slow_ping(timeout):
        pings.append(timeout)
        pinging.set()
        release.wait(5)
        return [{"w1": {"ok": "pong"}}, {"w2": {"ok": "pong"}}]

    monkeypatch.setattr(celery_app.control, "ping", slow_ping)
    first: list[dict] = []
    pinger = threading.Thread(target=lambda: first.append(health.check_celery()))
    pinger.start()
    assert pinging.wait(5)
    others = [health.check_celery() for _ in range(20)]  # while the ping is under way
    release.set()
    pinger.join(5)
    assert others == [{"status": "ok", "workers": 1}] * 20
    assert first == [{"status": "ok", "workers": 2}]
    assert len(pings) == 1
    assert health.check_celery() == {"status": "ok", "workers": 2}  # cached, no new ping
    assert len(pings) == 1


@pytest.mark.django_db
def test_a_burst_of_health_requests_counts_the_deliveries_once(client, monkeypatch):
    """The page is public: its counts (several queries) are computed at most once per
    process every few seconds, so a flood costs a SELECT 1 and a PING a request."""
    monkeypatch.setattr(health, "check_celery", lambda: {"status": "ok", "workers": 1})
    counted = []
    real = health.deliveries_summary

    def counting():
        counted.append(1)
        return real()

    monkeypatch.setattr(health, "deliveries_summary", counting)
    bodies = [client.get("/health").json() for _ in range(20)]
    assert len(counted) == 1
    assert all(body["deliveries"] == bodies[0]["deliveries"] for body in bodies)
    health._report_cache["deliveries"] = (0.0, {})  # expired: computed again
    client.get("/health")
    assert len(counted) == 2
