"""The admin's "Re-run the pipeline" is audit-logged, as the other supervisors' admin
actions are (re-driving a call record, closing one unapplied)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_rerunning_the_pipeline_is_audit_logged_with_who_and_which_calls(
    supervisor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calls.models import Call
    from support.models import AuditLog

    started: list[int] = []
    monkeypatch.setattr("calls.tasks.call_pipeline_start", started.append)
    failed = Call.objects.create(
        contact_id="c-10", pipeline_status="failed", pipeline_error="Transcribe: boom"
    )
    done = Call.objects.create(contact_id="c-11", pipeline_status="done")
    Call.objects.create(contact_id="c-12")  # not selected: not re-run, not logged
    browser = Client()
    browser.force_login(supervisor)
    response = browser.post(
        "/admin/calls/call/",
        {"action": "rerun_pipeline", "_selected_action": [done.pk, failed.pk]},
        follow=True,
    )
    assert "2 pipeline(s) started." in response.content.decode()
    assert sorted(started) == sorted([failed.pk, done.pk])
    logs = AuditLog.objects.filter(action="call.pipeline_rerun").order_by("object_id")
    assert [(log.actor, log.object_type, log.object_id, log.details) for log in logs] == sorted(
        [
            (
                supervisor,
                "calls.Call",
                str(failed.pk),
                {"contact_id": "c-10", "status": "failed", "error": "Transcribe: boom"},
            ),
            (
                supervisor,
                "calls.Call",
                str(done.pk),
                {"contact_id": "c-11", "status": "done", "error": ""},
            ),
        ],
        key=lambda row: row[2],
    )
    assert AuditLog.objects.count() == 2  # nothing else logged
