"""The container's commands, run outside a container against the local PostgreSQL and
Redis with production settings (``ENVIRONMENT=prod``): the entry point migrates a fresh
database, creates what an operator creates (a channel account, the first supervisor, an API
key), then serves ``web`` exactly as the image does, and that server answers the load
balancer's probe (Host = the task's IP), a signed webhook and an API request over HTTP;
``manage.py check --deploy`` is clean with the same settings."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from cryptography.fernet import Fernet

from channels_app.adapters.meta.common import meta_signature
from channels_app.fixtures import fixture_load

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = str(ROOT / "deploy" / "entrypoint.sh")
DOMAIN = "support.example.com"
APP_SECRET = "smoke-app-secret"
PHONE_NUMBER_ID = "106540352242922"  # the fixture's metadata.phone_number_id

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def prod_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Production settings on a database of their own (created here, dropped after)."""
    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"deploy_smoke_{os.getpid()}"
    admin_url = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "PYTEST", "DJANGO_")) and k not in ("ENVIRONMENT", "DEBUG")
    }
    env.update(
        ENVIRONMENT="prod",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=DOMAIN,
        CSRF_TRUSTED_ORIGINS=f"https://{DOMAIN}",
        SITE_URL=f"https://{DOMAIN}",
        DATABASE_URL=urlunsplit(url._replace(path=f"/{name}")),
        REDIS_URL=f"{redis_base}/13",
        CHANNELS_SECRETS_KEY=Fernet.generate_key().decode(),
        TRUSTED_PROXY_HOPS="1",
        PORT=str(_free_port()),
        WEB_CONCURRENCY="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
        STATIC_ROOT=str(tmp_path_factory.mktemp("staticfiles")),
    )
    yield env
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def entrypoint(env: dict[str, str], *args: str) -> str:
    """Run the container's entry point with ``args``; its stdout."""
    result = subprocess.run(
        [ENTRYPOINT, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-4000:])
    return result.stdout


def request(
    env: dict[str, str],
    method: str,
    path: str,
    *,
    host: str = DOMAIN,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Over HTTP as the load balancer forwards it (HTTPS ended there)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
    sent = {"Host": host, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    try:
        conn.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


#: What the operator runs once (docs/deploy.md): a channel account, the first supervisor and
#: an API key, with the product's own commands (in one process: each start costs seconds).
OPERATOR_SETUP = f"""
import io, json
from django.core.management import call_command
out = {{}}
for name, args in (
    ("webhook_path", ["channel_account_create", "--channel", "whatsapp", "--name", "smoke",
                      "--external-id", "{PHONE_NUMBER_ID}", "--app-secret", "{APP_SECRET}",
                      "--verify-token", "smoke-verify", "--access-token", "smoke-access"]),
    ("supervisor", ["createsuperuser", "--noinput", "--username", "first-sup",
                    "--email", "first-sup@example.com"]),
    ("api_key", ["api_key_create", "--user", "first-sup", "--name", "smoke"]),
):
    buffer = io.StringIO()
    call_command(*args, stdout=buffer)
    out[name] = buffer.getvalue().strip().splitlines()[-1]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def prepared(prod_env: dict[str, str]) -> dict[str, str]:
    """The image's build step (collectstatic) and the release's `migrate`, side by side
    (independent), then the operator's first steps."""
    build = subprocess.Popen(
        [ENTRYPOINT, "python", "manage.py", "collectstatic", "--no-input", "-v", "0"],
        env=prod_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    entrypoint(prod_env, "migrate")
    out, err = build.communicate(timeout=600)
    assert build.returncode == 0, out + err
    lines = entrypoint(prod_env, "python", "manage.py", "shell", "-c", OPERATOR_SETUP)
    return dict(json.loads(lines.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def web(prod_env: dict[str, str], prepared: dict[str, str]) -> Iterator[dict[str, str]]:
    """``web`` started the way the container starts it; no Celery worker runs."""
    proc = subprocess.Popen(
        [ENTRYPOINT, "web"],
        env=prod_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-4000:] if proc.stderr else ""
            try:
                # The container's HEALTHCHECK: 127.0.0.1 is not an allowed host in production.
                status, _ = request(prod_env, "GET", "/health/live", host="127.0.0.1:8000")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "web did not answer /health/live"
            time.sleep(0.5)
        yield prepared
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_check_deploy_is_clean_with_production_settings(prod_env: dict[str, str]) -> None:
    result = subprocess.run(
        [ENTRYPOINT, "python", "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=prod_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_load_balancer_probe_with_the_task_ip_as_host(prod_env, web) -> None:
    # No Celery worker runs: readiness is the database (and Redis, reported) only.
    status, body = request(prod_env, "GET", "/health/ready", host="10.0.3.7:8000", headers={})
    assert status == 200, body
    assert json.loads(body)["checks"]["database"]["status"] == "ok"
    status, body = request(prod_env, "GET", "/health", host="10.0.3.7:8000")
    assert status == 503  # the full report says no worker answered
    assert json.loads(body)["checks"]["celery"]["status"] == "down"
    # Any other path with that Host is refused, as before.
    status, _ = request(prod_env, "GET", "/accounts/login/", host="10.0.3.7:8000")
    assert status == 400
    status, _ = request(prod_env, "GET", "/accounts/login/")
    assert status == 200


def test_signed_webhook_and_api_smoke(prod_env, web) -> None:
    fixture = fixture_load("whatsapp", "text_message")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(APP_SECRET, fixture.body),
    }
    path = web["webhook_path"]
    status, body = request(prod_env, "POST", path, body=fixture.body, headers=headers)
    assert status == 200, body
    bad = {**headers, "X-Hub-Signature-256": meta_signature("wrong", fixture.body)}
    status, _ = request(prod_env, "POST", path, body=fixture.body, headers=bad)
    assert status in (401, 403)

    status, body = request(
        prod_env, "GET", "/api/tickets", headers={"Authorization": f"Api-Key {web['api_key']}"}
    )
    assert status == 200, body
    assert "results" in json.loads(body)
    status, _ = request(prod_env, "GET", "/api/tickets")
    assert status == 401
