"""CORS (django-cors-headers): only listed origins, preflights answered on the API and the
seed paths, credentials only for listed origins; the widget and the workbench unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.seed_contracts.conftest import DASHBOARD

pytestmark = pytest.mark.django_db

EVIL = "https://evil.example.net"


def _preflight(client: Client, path: str, origin: str, method: str = "POST") -> Any:
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_no_origin_is_allowed_by_default(client: Client) -> None:
    response = _preflight(client, "/api/tickets", DASHBOARD)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.parametrize(
    "path",
    [
        "/api/tickets",
        "/api/tickets/1/status",
        "/tickets",
        "/tickets/1",
        "/tickets/1/context",
        "/kb/sync",
        "/analytics",
        "/analytics/abc",
    ],
)
def test_listed_origin_gets_the_preflight_with_credentials(
    client: Client, settings: Any, path: str
) -> None:
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    response = _preflight(client, path, DASHBOARD)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == DASHBOARD
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert "authorization" in response["Access-Control-Allow-Headers"]
    assert "Content-Security-Policy" in response  # CSP still covers what CORS answers
    other = _preflight(client, path, EVIL)
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Credentials" not in other


def test_unlisted_origin_reads_nothing(client: Client, settings: Any, agent: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    client.force_login(agent)
    response = client.get("/api/tickets", HTTP_ORIGIN=EVIL)
    assert response.status_code == 200  # same-origin rules are the browser's: no header
    assert "Access-Control-Allow-Origin" not in response


def test_workbench_pages_and_the_widget_are_not_cors_enabled(client: Client, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    page = client.get("/tickets/1/", HTTP_ORIGIN=DASHBOARD)
    assert "Access-Control-Allow-Origin" not in page
    # the widget's own CORS (any origin, no cookies) is not replaced by the allow-list
    widget = _preflight(client, "/api/webchat/some-token/session", EVIL)
    assert widget["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in widget


def test_session_writes_from_another_origin_still_need_csrf(settings: Any, agent: Any) -> None:
    """CORS lets a listed origin read answers; it does not exempt it from CSRF."""
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    response = client.post(
        "/api/tickets",
        {"subject": "x", "customer": {"email": "a@example.com"}},
        content_type="application/json",
        HTTP_ORIGIN=DASHBOARD,
    )
    assert response.status_code == 403


def test_a_page_may_send_an_idempotency_key_and_read_the_replay_header(
    client: Client, settings: Any, agent: Any
) -> None:
    """A browser page on a listed origin retries a create with its key (docs/api.md,
    "Idempotency keys") and sees that the answer is a replay."""
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    preflight = _preflight(client, "/api/tickets", DASHBOARD)
    assert "idempotency-key" in preflight["Access-Control-Allow-Headers"]
    client.force_login(agent)
    body = {"subject": "Hi", "customer": {"email": "a@example.com"}}
    headers = {"Origin": DASHBOARD, "Idempotency-Key": "k-1"}
    client.post("/api/tickets", body, content_type="application/json", headers=headers)
    again = client.post("/api/tickets", body, content_type="application/json", headers=headers)
    assert again["Idempotent-Replayed"] == "true"
    assert "idempotent-replayed" in again["Access-Control-Expose-Headers"].lower()
