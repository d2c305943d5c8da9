"""The supervisors' agent-state board: time in state, the state's limit, alerts that are
over, and acknowledging an alert from the board."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from calls import services
from calls.models import AgentStateSpan, AlertKind, AlertRule
from support.models import OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def acw_rule():
    return AlertRule.objects.create(
        name="Long ACW", kind=AlertKind.STATE_LONGER_THAN, state="AfterContactWork"
    )


def span(username, state, minutes_ago, ended_minutes_ago=None):
    now = timezone.now()
    return AgentStateSpan.objects.create(
        agent_arn=f"arn:aws:connect:agent/{username}",
        username=username,
        state=state,
        started_at=now - timedelta(minutes=minutes_ago),
        ended_at=None if ended_minutes_ago is None else now - timedelta(minutes=ended_minutes_ago),
    )


def row(page: str, username: str) -> str:
    match = re.search(rf'<tr data-agent="{username}"[^>]*>.*?</tr>', page, re.S)
    assert match, page
    return match.group(0)


def test_time_in_state_reads_as_a_duration_and_past_the_limit_is_marked(
    client, supervisor, acw_rule
):
    AlertRule.objects.create(  # a looser rule on the same state does not raise the limit
        name="Very long ACW",
        kind=AlertKind.STATE_LONGER_THAN,
        state="AfterContactWork",
        threshold_minutes=30,
    )
    span("jdoe", "AfterContactWork", 260)
    span("asmith", "AfterContactWork", 3)
    span("bkhan", "Available", 400)  # no rule over Available: no limit
    client.force_login(supervisor)
    page = client.get("/calls/board/").content.decode()
    late = row(page, "jdoe")
    assert 'class="over"' in late
    assert 'data-limit="5"' in late
    assert "4 h 20 min" in late  # was the bare "260" under "Minutes"
    assert "over the 5 min limit" in late
    soon = row(page, "asmith")
    assert "over" not in soon
    assert "3 min 00 s" in soon
    free = row(page, "bkhan")
    assert "data-limit" not in free
    assert "6 h 40 min" in free
    assert "limit" not in free
    # the page's script knows every state's limit for agents whose state changes live
    assert 'data-state-limits="{&quot;AfterContactWork&quot;: 5}"' in page


def test_an_alert_whose_state_has_ended_is_marked_over(client, supervisor, acw_rule):
    old = span("jdoe", "AfterContactWork", 260, ended_minutes_ago=240)
    span("jdoe", "Available", 240)
    current = span("asmith", "AfterContactWork", 20)
    services.alert_raise(rule=acw_rule, span=old, seconds=20 * 60)
    services.alert_raise(rule=acw_rule, span=current, seconds=20 * 60)
    client.force_login(supervisor)
    page = client.get("/calls/board/").content.decode()
    pattern = r'<li class="alert[^"]*" data-alert-id="\d+" data-agent="(\w+)".*?</li>'
    items = {m.group(1): m.group(0) for m in re.finditer(pattern, page, re.S)}
    assert 'class="alert ended"' in items["jdoe"]
    assert "Over: the agent has left that state" in items["jdoe"]
    assert "ended" not in items["asmith"]
    assert "Still in that state" in items["asmith"]
    for item in items.values():  # each with its own button (POST, CSRF)
        assert "Acknowledge</button>" in item
        assert "csrfmiddlewaretoken" in item


def test_a_supervisor_acknowledges_an_alert_from_the_board(client, supervisor, acw_rule):
    alert = services.alert_raise(
        rule=acw_rule, span=span("jdoe", "AfterContactWork", 12), seconds=12 * 60
    )
    assert alert is not None
    client.force_login(supervisor)
    answer = client.post(f"/calls/board/alerts/{alert.pk}/acknowledge", follow=True)
    assert answer.redirect_chain == [("/calls/board/", 302)]
    page = answer.content.decode()
    assert "Acknowledged: jdoe has been in after contact work for 12 min (limit 5)." in page
    assert f'data-alert-id="{alert.pk}"' not in page
    assert "No open alerts." in page
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
    assert alert.acknowledged_by == supervisor
    # every open board drops it: one event, relayed to supervisors' sockets
    event = OutboxEvent.objects.get(event_type="call.alert_acknowledged")
    assert event.payload == {"alert_id": alert.pk, "username": "jdoe", "by": supervisor.username}
    # pressed again (another supervisor's board had not refreshed): said, nothing changes
    again = client.post(f"/calls/board/alerts/{alert.pk}/acknowledge", follow=True)
    assert "That alert was already acknowledged." in again.content.decode()
    assert OutboxEvent.objects.filter(event_type="call.alert_acknowledged").count() == 1


def test_acknowledging_is_for_supervisors_by_post(client, agent, supervisor, acw_rule):
    alert = services.alert_raise(
        rule=acw_rule, span=span("jdoe", "AfterContactWork", 12), seconds=12 * 60
    )
    assert alert is not None
    url = f"/calls/board/alerts/{alert.pk}/acknowledge"
    assert client.post(url).status_code == 302  # to the sign-in page
    client.force_login(agent)
    assert client.post(url).status_code == 403
    client.force_login(supervisor)
    assert client.get(url).status_code == 405
    assert client.post("/calls/board/alerts/999999/acknowledge").status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_the_admin_action_keeps_who_acknowledged(admin_client, acw_rule, django_user_model):
    alert = services.alert_raise(
        rule=acw_rule, span=span("jdoe", "AfterContactWork", 12), seconds=12 * 60
    )
    assert alert is not None
    admin_client.post(
        "/admin/calls/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]}
    )
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
    assert alert.acknowledged_by == django_user_model.objects.get(username="admin")


def test_acknowledging_needs_the_forms_csrf_token(supervisor, acw_rule):
    from django.test import Client

    alert = services.alert_raise(
        rule=acw_rule, span=span("jdoe", "AfterContactWork", 12), seconds=12 * 60
    )
    assert alert is not None
    client = Client(enforce_csrf_checks=True)
    client.force_login(supervisor)
    url = f"/calls/board/alerts/{alert.pk}/acknowledge"
    assert client.post(url).status_code == 403  # a cross-site form cannot acknowledge
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    board = client.get("/calls/board/")
    token = board.cookies["csrftoken"].value
    answer = client.post(url, {"csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
