"""The Content-Security-Policy (issue #13, 7): on every workbench page, scripts only from our
own files, and no template left that would need 'unsafe-inline'."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from django.conf import settings
from django.test import Client

from tickets import services

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.fixture
def ticket(customer):
    return services.ticket_create(customer=customer, subject="CSP", body="hello")


@pytest.fixture
def supervisor_web(supervisor):
    client = Client()
    client.force_login(supervisor)
    return client


def _workbench_paths(ticket) -> list[str]:
    return [
        "/",
        f"/tickets/{ticket.number}/",
        f"/customers/{ticket.customer_id}/",
        "/calls/",
        "/calls/board/",
    ]


def test_workbench_pages_carry_a_strict_policy(supervisor_web, ticket):
    for path in [*_workbench_paths(ticket), "/api/docs/"]:
        response = supervisor_web.get(path)
        assert response.status_code == 200, path
        policy = _policy(response)
        assert policy["default-src"] == ["'self'"], path
        assert policy["script-src"] == ["'self'"], path  # no 'unsafe-inline', no eval, no nonce
        assert policy["object-src"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["form-action"] == ["'self'"]
        assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
        if not path.startswith("/api/docs/"):
            assert policy["style-src"] == ["'self'"], path


def test_login_page_and_https_requests(ticket):
    response = Client().get("/accounts/login/")
    assert _policy(response)["script-src"] == ["'self'"]
    secure = Client().get("/accounts/login/", secure=True)
    assert _policy(secure)["connect-src"] == ["'self'", "wss://testserver"]


def test_admin_keeps_scripts_locked_and_only_allows_inline_styles(supervisor_web):
    response = supervisor_web.get("/admin/")
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_report_only_mode_sends_the_same_policy_as_a_report(ticket, supervisor_web, settings):
    policy = settings.CONTENT_SECURITY_POLICY
    del settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = policy
    response = supervisor_web.get("/")
    assert "Content-Security-Policy" not in response
    assert "script-src 'self'" in response["Content-Security-Policy-Report-Only"]


def test_rendered_workbench_pages_have_no_inline_script_or_style(supervisor_web, ticket):
    for path in _workbench_paths(ticket):
        soup = BeautifulSoup(supervisor_web.get(path).content, "html.parser")
        inline = [s for s in soup.find_all("script") if not s.get("src")]
        assert inline == [], path
        assert soup.find_all("style") == [], path
        for tag in soup.find_all(True):
            attrs = [a for a in tag.attrs if a.startswith("on") or a == "style"]
            assert attrs == [], (path, tag.name, attrs)
            for name in ("href", "src", "action"):
                assert not str(tag.get(name, "")).lower().startswith("javascript:"), path


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
HANDLER_OR_STYLE = re.compile(r"<[a-z][^>]*\s(on[a-z]+|style)\s*=", re.IGNORECASE)


def test_no_template_needs_unsafe_inline():
    """Every project template: no inline <script>, no <style> block, no on*= handler, no
    style= attribute (the admin's own base_site too: its colours are static/css/admin.css)."""
    offenders = []
    for directory in TEMPLATE_DIRS:
        for path in directory.rglob("*.html"):
            text = path.read_text()
            if INLINE_SCRIPT.search(text) or "<style" in text or HANDLER_OR_STYLE.search(text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
