"""The audit log in the admin: entries about people and credentials (users, groups, API
keys, SSO identities, channel accounts) are superusers' only, as those objects' own admin
pages are. A staff member given the audit log's view permission (an agent, or a
supervisor) lists, searches, filters and opens the entries about what they may see (a
ticket of their team), never those.

Before, such a person listed and opened every entry whose type no visibility rule places:
who created which API key, changed which user, which channel account."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from support.auth.roles import AGENTS_GROUP
from support.models import AuditLog

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
CHANGELIST = reverse("admin:support_auditlog_changelist")

# Every name a writer might give these objects' type: the model's label, its name, its
# words; in any case.
HIDDEN_TYPES = [
    "auth.User",
    "user",
    "auth.Group",
    "api_key",
    "support.ApiKey",
    "ApiKey",
    "support.oidcidentity",
    "channel_account",
    "channels_app.ChannelAccount",
    "channelaccount",
]


@pytest.fixture
def entries(django_user_model: Any, customer: Any) -> dict[str, Any]:
    from tickets import services
    from tickets.models import Team

    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    team = Team.objects.create(name="Ours", slug="ours")
    ticket = services.ticket_create(customer=customer, subject="Refund", body="Hi", team=team)
    shown = AuditLog.objects.create(
        actor=root, action="ticket.merge_customers", object_type="ticket", object_id=ticket.pk
    )
    hidden = [
        AuditLog.objects.create(
            actor=root,
            action=f"{kind.lower()}.changed",
            object_type=kind,
            object_id=str(root.pk),
            details={"name": f"secret-name-{n}"},
        )
        for n, kind in enumerate(HIDDEN_TYPES)
    ]
    return {"root": root, "team": team, "shown": shown, "hidden": hidden}


def _staff(django_user_model: Any, username: str, group: str, team: Any) -> Any:
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    team.members.add(user)
    user.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    return user


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _change(entry: AuditLog) -> str:
    return reverse("admin:support_auditlog_change", args=[entry.pk])


@pytest.mark.parametrize("group", [AGENTS_GROUP, "Supervisors"])
def test_staff_with_the_view_permission_sees_no_entry_about_people_or_credentials(
    django_user_model: Any, entries: dict[str, Any], group: str
) -> None:
    browser = _browser(_staff(django_user_model, "viewer", group, entries["team"]))
    shown, hidden = entries["shown"], entries["hidden"]

    page = browser.get(CHANGELIST)
    assert page.status_code == 200
    body = page.content.decode()
    assert _change(shown) in body
    assert "1 audit log" in body  # the count says nothing of the others
    for entry in hidden:
        assert _change(entry) not in body, entry.object_type
        # Nor do the filters offer their types or actions.
        assert f"object_type={entry.object_type}" not in body, entry.object_type
        assert f"action={entry.action}" not in body, entry.action

    # Search (by the actor, by the id) and the filters find none of them.
    for query in ("?q=root", f"?q={entries['root'].pk}"):
        body = browser.get(CHANGELIST + query).content.decode()
        assert not any(_change(entry) in body for entry in hidden), query
    assert _change(shown) in browser.get(CHANGELIST + "?q=root").content.decode()
    for entry in hidden:
        for query in (f"?object_type={entry.object_type}", f"?action={entry.action}"):
            body = browser.get(CHANGELIST + query).content.decode()
            assert _change(entry) not in body, query

    # Opened by their address, they answer as a missing entry does.
    for entry in hidden:
        for page_name in ("change", "history"):
            url = reverse(f"admin:support_auditlog_{page_name}", args=[entry.pk])
            response = browser.get(url, follow=True)
            assert response.redirect_chain == [("/admin/", 302)], (entry.object_type, page_name)
            text = response.content.decode()
            assert "doesn’t exist" in text
            assert "secret-name" not in text
    assert browser.get(_change(shown)).status_code == 200


def test_a_superuser_sees_every_entry(entries: dict[str, Any]) -> None:
    browser = _browser(entries["root"])
    body = browser.get(CHANGELIST).content.decode()
    for entry in [entries["shown"], *entries["hidden"]]:
        assert _change(entry) in body, entry.object_type
        assert browser.get(_change(entry)).status_code == 200, entry.object_type
    assert "object_type=api_key" in body  # the filter offers every type


def test_outbox_events_about_users_are_superusers_only(
    entries: dict[str, Any], django_user_model: Any
) -> None:
    """``agent.access_changed`` (who gained or lost a role) names a user: a supervisor
    given the outbox's view permission listed and opened it, the user's own admin page
    answering them 403."""
    from support.models import OutboxEvent

    about_user = OutboxEvent.objects.create(
        event_type="agent.access_changed",
        aggregate_type="user",
        aggregate_id=str(entries["root"].pk),
        payload={"username": "secret-name-user", "roles": ["supervisor"]},
    )
    about_ticket = OutboxEvent.objects.create(
        event_type="ticket.updated",
        aggregate_type="ticket",
        aggregate_id=str(entries["shown"].object_id),
        payload={},
    )
    supervisor = _staff(django_user_model, "sup", "Supervisors", entries["team"])
    supervisor.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    browser = _browser(supervisor)
    listing = browser.get(reverse("admin:support_outboxevent_changelist")).content.decode()
    assert f"/{about_ticket.pk}/change/" in listing
    assert f"/{about_user.pk}/change/" not in listing
    page = browser.get(reverse("admin:support_outboxevent_change", args=[about_user.pk]))
    assert b"secret-name-user" not in page.content
    root = _browser(entries["root"])
    listing = root.get(reverse("admin:support_outboxevent_changelist")).content.decode()
    assert f"/{about_user.pk}/change/" in listing
