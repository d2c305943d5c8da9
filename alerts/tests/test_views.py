"""The alerts pages: supervisors only (agents 403, anonymous to sign-in), filters,
acknowledge / resolve by POST with CSRF; the admin for rules and targets."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from alerts.models import Alert, AlertRule, AlertState, AlertTarget
from alerts.services import alert_raise


def _alert(fingerprint: str = "a", severity: str = "critical") -> Alert:
    return alert_raise(
        fingerprint=fingerprint, title=f"Alarm {fingerprint}", summary="Over.", severity=severity
    ).alert


def _client(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_only_supervisors_see_alerts(agent, supervisor, outsider):
    alert = _alert()
    for user in (agent, outsider):
        client = _client(user)
        assert client.get("/alerts/").status_code == 403
        assert client.get(f"/alerts/{alert.pk}/").status_code == 403
        assert client.post(f"/alerts/{alert.pk}/acknowledge").status_code == 403
        assert client.post(f"/alerts/{alert.pk}/resolve").status_code == 403
    anonymous = Client()
    assert anonymous.get("/alerts/").status_code == 302
    assert anonymous.post(f"/alerts/{alert.pk}/acknowledge").status_code == 302
    alert.refresh_from_db()
    assert alert.state == AlertState.FIRING
    assert _client(supervisor).get("/alerts/999999/").status_code == 404


@pytest.mark.django_db
def test_list_filters_by_state_and_severity(supervisor):
    critical = _alert("a", "critical")
    warning = _alert("b", "warning")
    resolved = _alert("c", "info")
    resolved.state = AlertState.RESOLVED
    resolved.save()
    client = _client(supervisor)

    page = client.get("/alerts/").content.decode()  # open by default
    assert "Alarm a" in page
    assert "Alarm b" in page
    assert "Alarm c" not in page
    page = client.get("/alerts/?state=&severity=warning").content.decode()
    assert "Alarm b" in page
    assert "Alarm a" not in page
    page = client.get("/alerts/?state=resolved").content.decode()
    assert "Alarm c" in page
    assert "Alarm a" not in page
    assert f'href="/alerts/{critical.pk}/"' in client.get("/alerts/").content.decode()
    assert warning.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            "state=fired",
            "state: unknown value 'fired'; one of open, firing, acknowledged, resolved.",
        ),
        ("severity=high", "severity: unknown value 'high'; one of critical, warning, info."),
    ],
)
def test_an_unknown_filter_value_is_refused_saying_so(supervisor, query, says):
    """It quietly became "Open" / "All severities": a list that looked like the answer."""
    _alert("a")
    response = _client(supervisor).get(f"/alerts/?{query}")
    html = response.content.decode()
    assert response.status_code == 400
    assert f'<p class="form-error" role="alert">{says}</p>'.replace("'", "&#x27;") in html
    assert "Alarm a" not in html


@pytest.mark.django_db
def test_acknowledge_and_resolve_from_the_page_with_csrf(supervisor):
    alert = _alert()
    client = _client(supervisor, csrf=True)
    page = client.get(f"/alerts/{alert.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Acknowledge" in body
    assert 'href="/static/css/alerts.css"' in body or "alerts.css" in body
    token = page.cookies["csrftoken"].value

    assert client.post(f"/alerts/{alert.pk}/acknowledge").status_code == 403  # no token
    response = client.post(
        f"/alerts/{alert.pk}/acknowledge", {"csrfmiddlewaretoken": token, "note": "mine"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/alerts/{alert.pk}/"
    response = client.post(
        f"/alerts/{alert.pk}/resolve",
        {"csrfmiddlewaretoken": token, "next": "/dashboard/"},
    )
    assert response["Location"] == "/dashboard/"
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by, alert.resolved_by) == (
        AlertState.RESOLVED,
        supervisor,
        supervisor,
    )
    body = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "mine" in body
    assert "Acknowledge</button>" not in body
    # the history names states by their labels ("firing → acknowledged" before)
    assert "<td>Firing → Acknowledged</td>" in body
    assert "<td>Acknowledged → Resolved</td>" in body

    # An off-site "next" is ignored; a second resolve says why it did nothing.
    response = client.post(
        f"/alerts/{alert.pk}/resolve",
        {"csrfmiddlewaretoken": token, "next": "//evil.example/"},
        follow=True,
    )
    assert response.redirect_chain == [(f"/alerts/{alert.pk}/", 302)]
    assert "Not resolved: The alert is already resolved." in response.content.decode()


@pytest.mark.django_db
def test_supervisors_configure_targets_in_the_admin_with_write_only_secrets(supervisor):
    client = _client(supervisor)
    assert client.get("/admin/alerts/alertrule/").status_code == 200
    refused = client.post(
        "/admin/alerts/alerttarget/add/",
        {
            "name": "Slack",
            "kind": "slack",
            "severities": ["info"],
            "secret": "http://127.0.0.1/hook",
            "is_active": "on",
        },
    )
    assert refused.status_code == 200
    assert "URL refused" in refused.content.decode()
    response = client.post(
        "/admin/alerts/alerttarget/add/",
        {
            "name": "Pager",
            "kind": "pagerduty",
            "severities": ["critical"],
            "secret": "0123456789abcdef0123456789abcdef",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    target = AlertTarget.objects.get()
    assert target.secret == "0123456789abcdef0123456789abcdef"
    change = client.get(f"/admin/alerts/alerttarget/{target.pk}/change/").content.decode()
    assert "0123456789abcdef0123456789abcdef" not in change
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM alerts_alerttarget")
        assert cursor.fetchone()[0].startswith("fernet:")
    bad_rule = client.post(
        "/admin/alerts/alertrule/add/",
        {
            "name": "Bad",
            "metric": "x{status=5}",
            "aggregation": "window",
            "window_seconds": 300,
            "comparison": "gt",
            "threshold": 1,
            "datapoints_to_alarm": 1,
            "severity": "warning",
        },
    )
    assert "Cannot read the label matchers" in bad_rule.content.decode()


@pytest.mark.django_db
def test_a_rule_naming_a_metric_no_source_exports_is_refused_with_the_field(supervisor):
    """A typo in a selector summed no sample (0) for ever: the rule could never fire
    (``> t``) or never resolve (``< t``). The form names the field and the close names."""
    client = _client(supervisor)
    form = {
        "name": "Typo",
        "metric": 'support_routing_provider_error{provider="bedrock"}',
        "denominator": "support_routing_tickets_processed",
        "aggregation": "window",
        "window_seconds": 300,
        "comparison": "gt",
        "threshold": 0.5,
        "datapoints_to_alarm": 1,
        "severity": "warning",
    }
    refused = client.post("/admin/alerts/alertrule/add/", form)
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert list(errors) == ["metric"]
    assert errors["metric"] == [
        "No metric source exports support_routing_provider_error (did you mean "
        "support_routing_provider_errors?)."
    ]
    refused = client.post(
        "/admin/alerts/alertrule/add/",
        {**form, "metric": "support_routing_provider_errors"}
        | {"denominator": "support_routing_ticket_processed"},
    )
    assert list(refused.context["adminform"].form.errors) == ["denominator"]

    # Names a histogram or counter exports without samples yet are known too.
    accepted = client.post(
        "/admin/alerts/alertrule/add/",
        {
            **form,
            "metric": "support_routing_processing_seconds_sum",
            "denominator": "support_routing_processing_seconds_count",
        },
    )
    assert accepted.status_code == 302
    assert AlertRule.objects.filter(name="Typo").exists()
