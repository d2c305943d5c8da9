"""Deleting an alert target in the admin while an alert sent to it is open is refused
(docs/alerts.md "Notifications"): a deleted target never gets the resolve, so its
PagerDuty incident or FIRING mail stayed open for ever."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from alerts.models import Alert, AlertState, AlertTarget, Severity, TargetKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-1234567")
    client = Client()
    client.force_login(user)
    return client


def _target(name: str) -> AlertTarget:
    return AlertTarget.objects.create(
        name=name, kind=TargetKind.EMAIL, severities=["critical"], email_to="ops@example.com"
    )


def _alert(target: AlertTarget, state: str, fingerprint: str) -> Alert:
    return Alert.objects.create(
        fingerprint=fingerprint,
        title="HighErrorRate",
        severity=Severity.CRITICAL,
        state=state,
        notified_target_ids=[target.pk],
    )


def test_deleting_a_target_owed_a_resolve_is_refused_with_what_to_do(root: Client) -> None:
    target = _target("On call")
    alert = _alert(target, AlertState.FIRING, "rule:1")
    url = f"/admin/alerts/alerttarget/{target.pk}/delete/"

    page = root.get(url).content.decode()
    assert f"Open alert #{alert.pk}" in page
    assert "deactivate the target instead" in page
    root.post(url, {"post": "yes"})
    assert AlertTarget.objects.filter(pk=target.pk).exists()

    root.post(
        "/admin/alerts/alerttarget/",
        {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"},
    )
    assert AlertTarget.objects.filter(pk=target.pk).exists()


def test_a_target_whose_alerts_are_resolved_is_deleted(root: Client) -> None:
    target = _target("Old pager")
    _alert(target, AlertState.RESOLVED, "rule:2")
    other = _target("Other")
    _alert(other, AlertState.ACKNOWLEDGED, "rule:3")  # another target's open alert

    response = root.post(f"/admin/alerts/alerttarget/{target.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AlertTarget.objects.filter(pk=target.pk).exists()
