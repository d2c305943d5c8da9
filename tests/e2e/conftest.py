"""Browser end-to-end fixtures: a real ASGI server (uvicorn + Channels) on a free loopback
port against the test database, and Debian's Chromium driven by Playwright.

The server runs with ``CELERY_TASK_ALWAYS_EAGER=true`` so the outbox relay runs inside the
web process right after each commit (no worker needed). Tests use ``transactional_db``
so what they write is committed and visible to the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database_url() -> str:
    from django.db import connection

    d = connection.settings_dict
    host = d["HOST"] or d.get("OPTIONS", {}).get("host", "")
    port = f":{d['PORT']}" if d["PORT"] else ""
    password = f":{d['PASSWORD']}" if d.get("PASSWORD") else ""
    if host.startswith("/"):
        return f"postgresql://{d['USER']}{password}@{port}/{d['NAME']}?host={host}"
    return f"postgresql://{d['USER']}{password}@{host}{port}/{d['NAME']}"


@pytest.fixture(scope="session")
def live_asgi(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it when run as root)")
    from django.conf import settings

    port = _free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DEBUG": "true",  # serve static files from the finders (no collectstatic)
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DB_POOL": "false",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "e2e-server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "support.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
            "--timeout-graceful-shutdown",  # as the product runs it (scripts/processes.py)
            "5",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    # A loaded CI machine may need longer to import the app: E2E_START_SECONDS.
    deadline = time.monotonic() + float(os.environ.get("E2E_START_SECONDS", "60"))
    while True:
        try:
            urllib.request.urlopen(f"{base}/accounts/login/", timeout=2).close()  # noqa: S310
            break
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"uvicorn did not start; see {ARTIFACTS / 'e2e-server.log'}")
            time.sleep(0.2)
    yield base
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(live_asgi: str) -> Iterator[Any]:
    """Playwright's sync API keeps an event loop running in this thread, which makes
    Django refuse ORM calls; allowed only while this module's browser is open."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def watch_csp(page: Any) -> list[str]:
    """Collect what the browser refuses under the Content-Security-Policy (it logs each
    violation to the console): every page is checked for none at the end of its test."""
    refused: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    return refused


@pytest.fixture
def page(browser: Any, live_asgi: str, request: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_asgi, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    refused = watch_csp(page)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"))
    context.close()
    assert refused == [], "Content-Security-Policy violations"
