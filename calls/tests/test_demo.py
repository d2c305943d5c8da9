from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from calls.models import Alert, AnalyticsPath, Call, CallAnalytics, Escalation
from calls.selectors import call_list
from support.auth.roles import is_supervisor
from tickets import demo as tickets_demo

pytestmark = pytest.mark.django_db


def test_demo_calls_load_twice(calls_settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo_calls")
        call_command("load_demo_calls")
    assert Call.objects.count() == 3
    paths = sorted(CallAnalytics.objects.values_list("produced_by", flat=True))
    assert paths == [AnalyticsPath.DATA_AUTOMATION, AnalyticsPath.LOCAL]
    assert Escalation.objects.get().kind == "max_retries"
    assert Alert.objects.get().username == "jdoe"
    # every demo call lasts a while (one once showed -6680 s: its record's times did not
    # move with its start)
    assert all(call.duration_seconds and call.duration_seconds > 0 for call in Call.objects.all())


def test_the_demo_agent_sees_a_demo_call(monkeypatch, calls_settings):
    """The sign-in `make run` prints for an agent (agent1) finds a call on the calls page."""
    monkeypatch.setattr(tickets_demo, "DEMO_TICKETS", 4)
    tickets_demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    call_command("load_demo_calls")
    agent1 = get_user_model().objects.get(username="agent1")
    assert not is_supervisor(agent1)
    assert call_list(user=agent1).exists()
