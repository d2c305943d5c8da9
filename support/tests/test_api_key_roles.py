"""API key roles: ``user`` keys act as their user; ``integration`` keys are machine
credentials accepted only by integration endpoints (issue #13, item 8)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from support.models import ApiKey, ApiKeyRole
from support.services import api_key_create, hash_api_key

pytestmark = pytest.mark.django_db

CONTACT_EVENT = (
    Path(__file__).resolve().parents[2] / "calls/tests/fixtures/contact_event_connected.json"
)


def _key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


@pytest.fixture
def integration(supervisor: Any) -> APIClient:
    """An integration key whose user is even a supervisor: the role decides, not the user."""
    _, raw = api_key_create(name="connect", user=supervisor, role=ApiKeyRole.INTEGRATION)
    return _key_client(raw)


def test_default_role_is_user(agent):
    key, _ = api_key_create(name="bot", user=agent)
    assert (key.role, key.is_integration) == (ApiKeyRole.USER, False)


def test_integration_key_is_refused_by_agent_endpoints(integration, customer):
    listing = integration.get("/api/tickets")
    assert listing.status_code == 403
    assert listing.json()["error"] == {
        "code": "permission_denied",
        "message": "Integration API keys are accepted only by integration endpoints.",
        "details": {},
    }
    created = integration.post(
        "/api/tickets", {"subject": "x", "customer_id": customer.pk}, format="json"
    )
    assert created.status_code == 403
    for url in (f"/api/customers/{customer.pk}/context", "/api/analytics", "/api/kb/search"):
        assert integration.get(url).status_code == 403, url
    assert integration.post("/api/kb/sync", {}, format="json").status_code == 403


def test_integration_key_is_refused_where_views_check_roles_themselves(integration):
    """The chatbot hand-off checks ``is_agent(request.user)`` itself: an integration key
    is not an agent there either."""
    response = integration.post(
        "/api/webhooks/chatbot",
        {
            "source": "bot",
            "customer_email": "a@example.com",
            "subject": "Help",
            "initial_message": "Hi",
            "session_id": "s-1",
        },
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_integration_key_posts_call_events(integration, settings):
    settings.CALLS_TRANSCRIPTION_BACKEND = "local"
    response = integration.post(
        "/api/calls/events",
        data=CONTACT_EVENT.read_text(),
        content_type="application/json",
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1


def test_user_key_keeps_acting_as_its_user(agent, customer):
    _, raw = api_key_create(name="bot", user=agent)
    client = _key_client(raw)
    assert client.get("/api/tickets").status_code == 200
    assert (
        client.post(
            "/api/calls/events",
            data=json.dumps({"hello": "world"}),
            content_type="application/json",
        ).status_code
        == 403
    )


def test_role_change_in_admin_applies_at_once(client, supervisor, agent):
    """The admin adds keys with a role and a role change drops the key from the cache."""
    supervisor.is_superuser = True
    supervisor.save()
    client.force_login(supervisor)
    response = client.post(
        "/admin/support/apikey/add/",
        {"name": "connect-forwarder", "user": agent.pk, "role": "integration"},
    )
    assert response.status_code == 302
    key = ApiKey.objects.get(name="connect-forwarder")
    assert key.role == ApiKeyRole.INTEGRATION
    raw = next(
        str(m.message).rsplit(": ", 1)[1]
        for m in response.wsgi_request._messages  # type: ignore[attr-defined]
        if "Copy it now" in str(m.message)
    )
    assert hash_api_key(raw) == key.key_hash
    assert _key_client(raw).get("/api/tickets").status_code == 403
    response = client.post(
        f"/admin/support/apikey/{key.pk}/change/",
        {"name": "connect-forwarder", "user": agent.pk, "role": "user"},
    )
    assert response.status_code == 302
    assert _key_client(raw).get("/api/tickets").status_code == 200


def test_command_creates_keys_with_a_role(agent):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "api_key_create",
        "--user",
        agent.username,
        "--name",
        "connect",
        "--role",
        "integration",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(key_hash=hash_api_key(raw))
    assert (key.name, key.role, key.user) == ("connect", ApiKeyRole.INTEGRATION, agent)
    assert "Copy it now" in err.getvalue()
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("api_key_create", "--user", "nobody", "--name", "x")


def test_service_refuses_unknown_roles(agent):
    with pytest.raises(ValueError, match="role: 'root'"):
        api_key_create(name="x", user=agent, role="root")
