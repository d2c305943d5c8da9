"""The dashboard's alerts widget: open alerts listed with their buttons; acknowledging and
resolving from the dashboard are recorded and come back to the dashboard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from alerts.models import AlertEvent, AlertState
from alerts.services import alert_raise

pytestmark = pytest.mark.django_db


def _csrf_client(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_open_alerts_are_listed_with_buttons_and_acknowledged_from_the_dashboard(supervisor):
    alert = alert_raise(
        fingerprint="rule:x", title="Http5xxRate over 1%", summary="Over.", severity="critical"
    ).alert
    resolved = alert_raise(
        fingerprint="rule:y", title="Old alarm", summary="Over.", severity="warning"
    ).alert
    resolved.state = AlertState.RESOLVED
    resolved.save(update_fields=["state"])
    client = _csrf_client(supervisor)

    page = client.get("/dashboard/widgets/alerts/?range=30d").content.decode()

    assert "Http5xxRate over 1%" in page
    assert "Old alarm" not in page
    assert f'action="/alerts/{alert.pk}/acknowledge"' in page
    assert f'href="/alerts/{alert.pk}/"' in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    next_value = re.search(r'name="next" value="([^"]+)"', page)
    assert next_value is not None
    assert next_value.group(1).startswith("/dashboard/")

    response = client.post(
        f"/alerts/{alert.pk}/acknowledge",
        {"csrfmiddlewaretoken": token.group(1), "next": "/dashboard/?range=30d"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/?range=30d"
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    assert alert.acknowledged_by == supervisor
    assert AlertEvent.objects.filter(alert=alert, to_state=AlertState.ACKNOWLEDGED).exists()
    page = client.get("/dashboard/widgets/alerts/").content.decode()
    assert f'action="/alerts/{alert.pk}/acknowledge"' not in page
    assert f'action="/alerts/{alert.pk}/resolve"' in page


def test_the_alerts_data_carries_no_buttons(supervisor):
    alert_raise(fingerprint="rule:x", title="Alarm", summary="Over.", severity="critical")
    client = Client()
    client.force_login(supervisor)

    body = client.get("/dashboard/data/alerts/").json()
    csv_text = client.get("/dashboard/data/alerts/?format=csv").content.decode()

    assert "/alerts/" not in str(body)
    assert "/alerts/" not in csv_text
    assert set(body) >= {"columns", "rows", "stats"}
    assert "Alarm" in csv_text
