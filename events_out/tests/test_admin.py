"""Outgoing webhooks in the admin: supervisors configure them; the secret is write-only,
encrypted at rest and shown once when generated; changes are audited; unsafe URLs are
refused."""

from __future__ import annotations

from django.db import connection
from django.urls import reverse

from events_out.models import OutgoingWebhook
from support.models import AuditLog

ADD = "admin:events_out_outgoingwebhook_add"


def _form(**overrides):
    data = {
        "name": "CRM",
        "url": "https://hooks.example.com/support",
        "event_types": ["ticket.created", "ticket.resolved"],
        "secret": "",
        "is_active": "on",
    }
    data.update(overrides)
    return data


def test_the_generated_secret_never_travels_in_a_cookie(client, supervisor):
    """The secret is shown as a message after the redirect: Django's default message
    storage carried it there in a ``messages`` cookie (signed, compressed, not encrypted:
    readable by whatever sees the browser's cookies). Messages live in the session."""
    client.force_login(supervisor)
    response = client.post(reverse(ADD), _form())
    assert response.status_code == 302
    assert "messages" not in response.cookies
    page = client.get(response["Location"])
    assert OutgoingWebhook.objects.get().secret in page.content.decode()


def test_a_supervisor_adds_a_webhook_and_sees_the_generated_secret_once(client, supervisor):
    client.force_login(supervisor)
    response = client.post(reverse(ADD), _form(), follow=True)

    assert response.status_code == 200
    hook = OutgoingWebhook.objects.get()
    assert hook.event_types == ["ticket.created", "ticket.resolved"]
    assert hook.secret.startswith("whsec_")
    shown = [str(m) for m in response.context["messages"]]
    assert any(hook.secret in m for m in shown)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM events_out_outgoingwebhook WHERE id = %s", [hook.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:")
    assert hook.secret not in stored
    audit = AuditLog.objects.get(action="events_out.webhook_created")
    assert audit.actor == supervisor
    assert audit.details["url"] == "https://hooks.example.com/support"
    assert hook.secret not in str(audit.details)

    # The change page never shows the secret, and an empty field keeps it.
    change = reverse("admin:events_out_outgoingwebhook_change", args=[hook.pk])
    page = client.get(change)
    assert hook.secret not in page.content.decode()
    before = hook.secret
    client.post(change, _form(name="CRM 2", event_types=["message.created"]))
    hook.refresh_from_db()
    assert (hook.name, hook.event_types, hook.secret) == ("CRM 2", ["message.created"], before)
    client.post(change, _form(secret="a-new-secret-of-enough-length"))
    hook.refresh_from_db()
    assert hook.secret == "a-new-secret-of-enough-length"
    changed = AuditLog.objects.filter(action="events_out.webhook_changed").order_by("pk")
    assert [a.details["changed"] for a in changed] == [
        ["event_types", "name"],
        ["event_types", "name", "secret"],
    ]


def test_unsafe_urls_and_short_secrets_are_refused(client, supervisor):
    client.force_login(supervisor)
    for url in (
        "http://hooks.example.com/support",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/hook",
        "javascript:alert(1)",
    ):
        response = client.post(reverse(ADD), _form(url=url))
        assert response.status_code == 200, url
        assert response.context["adminform"].form.errors["url"], url
    response = client.post(reverse(ADD), _form(secret="short"))
    assert response.context["adminform"].form.errors["secret"]
    assert not OutgoingWebhook.objects.exists()


def test_agents_cannot_open_the_webhook_pages(client, agent):
    client.force_login(agent)
    response = client.get(reverse("admin:events_out_outgoingwebhook_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
