"""Every page of the admin index has a name of its own, and the two kinds of alerts say
which they are: the call centre's agent-state alert rules and alerts (``calls``) and the
alarm rules over the metrics with their alerts (``alerts``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client

pytestmark = pytest.mark.django_db


def test_no_two_admin_pages_share_a_name() -> None:
    """The index listed "Alert rules" and "Alerts" twice (under Calls and under Alerts)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for model in admin.site._registry:
        by_name[str(model._meta.verbose_name_plural).lower()].append(model._meta.label)
    shared = {name: labels for name, labels in by_name.items() if len(labels) > 1}
    assert not shared


@pytest.fixture
def superuser_browser(django_user_model: Any) -> Client:
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-1234567")
    client = Client()
    client.force_login(root)
    return client


@pytest.mark.parametrize(
    ("url", "says", "docs"),
    [
        ("/admin/calls/alertrule/", "Rules over agents' states", "docs/calls.md"),
        ("/admin/calls/alertrule/add/", "Rules over agents' states", "docs/calls.md"),
        ("/admin/calls/alert/", "What the agent-state alert rules raised", "docs/calls.md"),
        ("/admin/alerts/alertrule/", "Alarm rules over the figures of /metrics", "docs/alerts.md"),
        ("/admin/alerts/alert/", "Alerts raised by the alarm rules", "docs/alerts.md"),
    ],
)
def test_each_alert_page_says_what_it_lists_and_where_it_is_documented(
    superuser_browser: Client, url: str, says: str, docs: str
) -> None:
    page = superuser_browser.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert says.replace("'", "&#x27;") in html
    assert f"<code>{docs}" in html


def test_the_index_tells_the_two_kinds_apart(superuser_browser: Client) -> None:
    html = superuser_browser.get("/admin/").content.decode()
    for name in ("Agent-state alert rules", "Agent-state alerts", "Alert rules", "Alerts"):
        assert f">{name}</a>" in html, name
