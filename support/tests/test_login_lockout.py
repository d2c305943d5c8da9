"""Login lockout (issue #13, 11): repeated failed password sign-ins lock the username and
the client IP, on the workbench and the admin sign-in pages; supervisors unlock."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory

from support.models import AuditLog
from support.parsing import bounded_key
from support.services import api_key_create

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
LOCKED_MESSAGE = (
    "Too many failed sign-in attempts. Try again in 15 minutes, "
    "or ask a supervisor to unlock your account."
)


def _login(username: str, password: str, *, ip: str = "198.51.100.7", path: str = "") -> Any:
    url = path or "/accounts/login/"
    data = {"username": username, "password": password, "next": "/"}
    if url.startswith("/admin/"):
        data["next"] = "/admin/"
    return Client(REMOTE_ADDR=ip).post(url, data)


def _fail(username: str, times: int, **kwargs: Any) -> None:
    for _ in range(times):
        response = _login(username, "wrong-password", **kwargs)
        assert response.status_code in (200, 429)


def test_username_is_locked_after_the_limit_even_with_the_right_password(agent, settings):
    assert settings.LOGIN_FAILURE_LIMIT == 5
    _fail("agent", 4)
    ok = _login("agent", PASSWORD)
    assert ok.status_code == 302  # four failures: still allowed
    _fail("agent", 5, ip="198.51.100.8")
    locked = _login("agent", PASSWORD, ip="192.0.2.44")  # from anywhere
    assert locked.status_code == 429
    assert LOCKED_MESSAGE in locked.content.decode()
    assert "_auth_user_id" not in locked.wsgi_request.session


def test_ip_is_locked_after_failures_on_many_usernames(agent, other_agent):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        _fail(name, 1, ip="203.0.113.5")
    blocked = _login("agent", PASSWORD, ip="203.0.113.5")
    assert blocked.status_code == 429
    assert _login("other-agent", PASSWORD, ip="203.0.113.6").status_code == 302


def test_admin_login_is_locked_too(supervisor):
    _fail("supervisor", 5, path="/admin/login/?next=/admin/")
    response = _login("supervisor", PASSWORD, path="/admin/login/?next=/admin/")
    assert response.status_code == 429
    assert LOCKED_MESSAGE in response.content.decode()


def test_the_ip_comes_from_the_projects_client_ip_rule(agent, monkeypatch):
    seen: list[dict[str, Any]] = []

    def fake_client_ip(meta: Any) -> str:
        seen.append(dict(meta))
        return "203.0.113.99"

    monkeypatch.setattr("support.auth.lockout.client_ip_from_meta", fake_client_ip)
    _fail("agent", 1, ip="10.0.0.1")
    assert list(AccessAttempt.objects.values_list("username", "ip_address")) == [
        ("agent", "203.0.113.99")
    ]
    assert seen
    assert seen[0]["REMOTE_ADDR"] == "10.0.0.1"


def test_supervisor_unlocks_a_username_in_the_admin(agent, supervisor):
    _fail("agent", 5)
    assert _login("agent", PASSWORD, ip="192.0.2.1").status_code == 429
    admin = Client()
    admin.force_login(supervisor)
    changelist = admin.get("/admin/axes/accessattempt/")
    assert changelist.status_code == 200
    assert "Unlock the selected usernames" in changelist.content.decode()
    # two records: the five failures, and the refused attempt from another address
    first, _ = AccessAttempt.objects.filter(username="agent").order_by("attempt_time")
    response = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock_usernames", "_selected_action": [first.pk]},
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="agent").exists()
    entry = AuditLog.objects.get(action="login_lockout_reset")
    assert (entry.actor, entry.object_id, entry.details) == (
        supervisor,
        "agent",
        {"username": "agent", "attempt_records": 2},
    )
    assert _login("agent", PASSWORD, ip="192.0.2.1").status_code == 302


def test_an_agent_cannot_see_or_unlock(agent, other_agent):
    other_agent.is_staff = True
    other_agent.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(other_agent)
    assert client.get("/admin/axes/accessattempt/").status_code == 403


def test_unlock_from_the_command_line(agent):
    _fail("agent", 5)
    call_command("axes_reset_username", "agent", stdout=None)
    assert _login("agent", PASSWORD).status_code == 302


class TokenBackend:
    """Stands in for the OIDC backend: authenticates without a password."""

    def authenticate(self, request: Any, token: str | None = None, **kwargs: Any) -> Any:
        return get_user_model().objects.get(username="agent") if token == "ok" else None

    def get_user(self, user_id: int) -> Any:
        return get_user_model().objects.filter(pk=user_id).first()


def test_password_less_logins_and_api_keys_are_not_locked(agent, settings):
    _fail("agent", 5, ip="198.51.100.20")
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "support.tests.test_login_lockout.TokenBackend",
    ]
    request = RequestFactory().get("/oidc/callback/", REMOTE_ADDR="198.51.100.20")
    assert authenticate(request=request, token="ok") == agent
    _, raw_key = api_key_create(name="lockout", user=agent)
    api = Client(REMOTE_ADDR="198.51.100.20")
    response = api.get("/api/tickets", HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert response.status_code == 200


def test_force_login_and_force_authenticate_are_unaffected(agent, agent_client):
    _fail("agent", 5, ip="127.0.0.1")
    client = Client()
    client.force_login(agent)
    assert client.get("/").status_code == 200
    assert agent_client.get("/api/tickets").status_code == 200


def test_the_admin_lists_only_the_axes_records_this_configuration_writes(supervisor):
    """Successful sign-ins are not logged (AXES_DISABLE_ACCESS_LOG) and the failure log is
    off: axes' "Access logs" and "Access failures" pages stayed empty whatever happened."""
    from axes.models import AccessFailureLog, AccessLog
    from django.contrib import admin as django_admin

    assert django_admin.site.is_registered(AccessAttempt)
    assert not django_admin.site.is_registered(AccessLog)
    assert not django_admin.site.is_registered(AccessFailureLog)
    client = Client()
    client.force_login(supervisor)
    assert client.get("/admin/axes/accesslog/").status_code == 404
    assert client.get("/admin/axes/accessfailurelog/").status_code == 404


def test_the_attempts_page_says_a_username_is_locked_when_its_failures_are_spread(
    agent, supervisor
):
    """One failure from each of five addresses: five records of one failure each, and the
    username is locked. Axes' own column said "4 Attempt Remaining" on every one."""
    for n in range(5):
        _fail("agent", 1, ip=f"198.51.100.{30 + n}")
    assert AccessAttempt.objects.count() == 5
    assert _login("agent", PASSWORD, ip="198.51.100.30").status_code == 429  # a 6th failure
    admin = Client()
    admin.force_login(supervisor)
    page = admin.get("/admin/axes/accessattempt/").content.decode()
    assert page.count("Locked out: username agent (6 failures) until") == 5
    assert "Attempt Remaining" not in page
    locked = admin.get("/admin/axes/accessattempt/?locked_now=yes")
    assert locked.context["cl"].result_count == 5
    first = AccessAttempt.objects.order_by("pk").first()
    detail = admin.get(f"/admin/axes/accessattempt/{first.pk}/change/").content.decode()
    assert "Locked out: username agent (6 failures)" in detail


def test_the_attempts_page_says_when_failures_no_longer_count(agent, supervisor):
    """A record older than the lockout time is not counted by axes (it is deleted at the
    next sign-in): the page says so instead of "Locked Out"."""
    from datetime import timedelta

    from django.utils import timezone

    admin = Client()
    admin.force_login(supervisor)  # a sign-in deletes expired records: before they expire
    _fail("agent", 5, ip="198.51.100.50")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    page = admin.get("/admin/axes/accessattempt/").content.decode()
    assert "Not locked (0 of 5 failures within the lockout time); this record no longer counts" in (
        page
    )
    assert admin.get("/admin/axes/accessattempt/?locked_now=no").context["cl"].result_count == 1


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/?next=/admin/"])
@pytest.mark.parametrize("length", [256, 5000])
def test_a_username_longer_than_the_attempt_record_is_a_failed_sign_in(path, length):
    """Axes stored the username as typed in a 255-character column: 256 characters or more
    with a wrong password was a DataError (500) on both sign-in pages, for anyone."""
    name = "u" * length
    response = Client(raise_request_exception=False, REMOTE_ADDR="198.51.100.60").post(
        path, {"username": name, "password": "wrong-password"}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in response.wsgi_request.session
    (attempt,) = AccessAttempt.objects.all()
    assert attempt.username == bounded_key(name, 255)
    assert len(attempt.username) == 255
    assert attempt.username.startswith("u" * 100)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/?next=/admin/"])
def test_a_long_username_is_locked_out_like_any_other(path):
    """The same long name is one key at every attempt (from five addresses: the username
    rule, not the address's); another long name with the same first 255 characters is
    another key."""
    name = "v" * 300
    for n in range(5):
        _fail(name, 1, ip=f"198.51.100.{70 + n}", path=path)
    assert _login(name, "wrong-password", ip="192.0.2.70", path=path).status_code == 429
    other = _login("v" * 301, "wrong-password", ip="192.0.2.71", path=path)
    assert other.status_code == 200
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {
        bounded_key(name, 255),
        bounded_key("v" * 301, 255),
    }


def test_usernames_within_the_column_are_counted_as_typed(agent):
    name = "x" * 255
    _fail(name, 1)
    _fail("agent", 1, ip="198.51.100.80")
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {name, "agent"}
