"""Browser test: a long after-contact-work state shows an alert live on the supervisor board.

Starts uvicorn on a loopback port against the test database (eager Celery, so the outbox
relay runs in the server process), signs a supervisor in with Chromium, opens the board,
then posts an agent event to the API and waits for the alert to appear over /ws/events/.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from calls.models import AlertKind, AlertRule
from calls.tests.conftest import load

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _test_database_url(name: str) -> str:
    """The configured URL, pointed at the test database pytest-django created."""
    from urllib.parse import urlsplit, urlunsplit

    if not os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is not set (run through scripts/test.sh)")
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def live_server_url() -> Iterator[str]:
    from django.db import connection

    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "DATABASE_URL": _test_database_url(db["NAME"]),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DB_POOL": "false",
        "DEBUG": "true",  # serve static files (the board's script is one) without collectstatic
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "support.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            # as the product runs it (scripts/processes.py): live websockets do not hold
            # the shutdown open
            "--timeout-graceful-shutdown",
            "5",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # generous: a loaded machine imports slowly
        while True:
            try:
                if requests.get(f"{url}/accounts/login/", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _acw_event(now: datetime) -> dict[str, Any]:
    record = copy.deepcopy(load("agent_state_acw.json"))
    record["EventId"] = "e2e-acw-1"
    record["EventTimestamp"] = now.isoformat().replace("+00:00", "Z")
    record["CurrentAgentSnapshot"]["Contacts"][0]["StateStartTimestamp"] = (
        now - timedelta(minutes=12)
    ).isoformat()
    return record


def test_long_acw_alert_appears_live(live_server_url, supervisor, agent):
    from playwright.sync_api import expect, sync_playwright

    from support.models import ApiKey, ApiKeyRole
    from support.services import hash_api_key

    AlertRule.objects.create(
        name="Long ACW",
        kind=AlertKind.STATE_LONGER_THAN,
        state="AfterContactWork",
        threshold_minutes=5,
    )
    ApiKey.objects.create(
        name="connect",
        prefix="e2e",
        key_hash=hash_api_key("e2e-key"),
        user=agent,
        role=ApiKeyRole.INTEGRATION,
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # A browser in another zone than the site's (UTC in tests): the board still
            # writes the site's times, like the ones it rendered.
            page = browser.new_page(timezone_id="America/New_York")
            refused: list[str] = []  # Content-Security-Policy violations the browser reports
            page.on(
                "console",
                lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(f"{live_server_url}/accounts/login/?next=/calls/board/")
            page.fill("#id_username", supervisor.username)
            page.fill("#id_password", "pw-for-tests-1")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(f"{live_server_url}/calls/board/")
            expect(page.locator("#ws-status")).to_have_attribute(
                "data-state", "open", timeout=10_000
            )
            expect(page.locator("#alerts li.alert")).to_have_count(0)

            posted = datetime.now(UTC)
            response = requests.post(
                f"{live_server_url}/api/calls/events",
                data=json.dumps(_acw_event(datetime.now(UTC))),
                headers={"Content-Type": "application/json", "Authorization": "Api-Key e2e-key"},
                timeout=30,
            )
            assert response.status_code == 202, response.text

            live = page.locator("#alerts li.alert.live")
            expect(live).to_have_count(1, timeout=10_000)
            # when it was raised (24-hour, like the rendered ones), then what it says
            expect(live.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
            expect(live.locator(".message")).to_have_text(
                "jdoe has been in after contact work for 12 min (limit 5)."
            )
            expect(live.locator(".span-state")).to_have_text("Still in that state")
            raised = live.locator("time").inner_text()
            assert raised in {
                f"{posted:%H:%M}",
                f"{posted + timedelta(minutes=1):%H:%M}",
            }, raised
            # the state as words, as the page renders it (support.text.words)
            expect(page.locator('#agents tr[data-agent="jdoe"] .state')).to_have_text(
                "After contact work"
            )
            since = page.locator('#agents tr[data-agent="jdoe"] .since')
            started = datetime.fromisoformat(since.get_attribute("data-since") or "")
            assert since.inner_text() == f"{started.astimezone(UTC):%H:%M:%S}"
            # time in state as people read it, past the state's limit and marked so
            row = page.locator('#agents tr[data-agent="jdoe"]')
            expect(row).to_have_class(re.compile(r"\bover\b"))
            expect(row.locator(".duration")).to_have_text(re.compile(r"^1[23] min \d\d s$"))
            expect(row.locator(".limit")).to_have_text("over the 5 min limit")

            # a second board (another supervisor's screen), open before the acknowledgement
            other = browser.new_context(storage_state=page.context.storage_state()).new_page()
            other.goto(f"{live_server_url}/calls/board/")
            expect(other.locator("#ws-status")).to_have_attribute(
                "data-state", "open", timeout=10_000
            )
            expect(other.locator("#alerts li.alert")).to_have_count(1)

            # acknowledged from the board (the button that came with the live alert): it
            # leaves the board, and the page says so
            live.get_by_role("button", name="Acknowledge").click()
            page.wait_for_url(f"{live_server_url}/calls/board/")
            expect(page.locator(".flash")).to_contain_text(
                "Acknowledged: jdoe has been in after contact work for 12 min (limit 5)."
            )
            expect(page.locator("#alerts li.alert")).to_have_count(0)
            expect(page.locator("#alerts li.empty")).to_have_text("No open alerts.")
            # and leaves the other board live (call.alert_acknowledged over /ws/events/)
            expect(other.locator("#alerts li.alert")).to_have_count(0, timeout=10_000)
            expect(other.locator("#alerts li.empty")).to_have_text("No open alerts.")
            assert refused == []
        finally:
            browser.close()
