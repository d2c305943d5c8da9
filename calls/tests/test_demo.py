from __future__ import annotations

import pytest
from django.core.management import call_command

from calls.models import Alert, AnalyticsPath, Call, CallAnalytics, Escalation

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
