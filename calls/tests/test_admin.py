from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_admin_pages_render(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    for model in (
        "call",
        "callevent",
        "alertrule",
        "alert",
        "agentstatespan",
    ):
        assert client.get(f"/admin/calls/{model}/").status_code == 200


RECORDS = (
    "call",
    "callevent",
    "alert",
    "transcript",
    "callanalytics",
    "ivrjourney",
    "escalation",
    "agentstateevent",
    "agentstatespan",
)


def test_received_and_derived_records_are_not_made_or_edited_by_hand(client, django_user_model):
    from calls.models import Call, CallEvent

    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    for model in RECORDS:
        assert client.get(f"/admin/calls/{model}/add/").status_code == 403, model
    # A forged record would make the real one (same source and external id) a "duplicate".
    form = {"source": "ctr", "external_id": "contact-1", "status": "processed", "payload": "{}"}
    assert client.post("/admin/calls/callevent/add/", form).status_code == 403
    assert not CallEvent.objects.exists()
    call = Call.objects.create(contact_id="c-1", queue_name="BillingQueue")
    assert client.get(f"/admin/calls/call/{call.pk}/change/").status_code == 200  # shown
    client.post(f"/admin/calls/call/{call.pk}/change/", {"queue_name": "OtherQueue"})
    call.refresh_from_db()
    assert call.queue_name == "BillingQueue"


def test_the_pipeline_can_still_be_rerun_from_the_list(client, django_user_model, monkeypatch):
    from calls.models import Call

    started: list[int] = []
    monkeypatch.setattr("calls.tasks.call_pipeline_start", started.append)
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    call = Call.objects.create(contact_id="c-2", pipeline_status="failed", attempts=4)
    response = client.post(
        "/admin/calls/call/",
        {"action": "rerun_pipeline", "_selected_action": [call.pk], "index": 0},
    )
    assert response.status_code == 302
    assert started == [call.pk]
    call.refresh_from_db()  # given up by the pipeline sweep: its count starts again
    assert (call.attempts, call.attempted_at) == (0, None)


def test_only_supervisors_rerun_the_pipeline(
    client, supervisor, agent, django_user_model, monkeypatch
):
    """docs/security.md: re-running a call's pipeline (transcription, analysis) is the
    supervisors'. A staff agent given the calls' Django permissions, who sees the call
    (its queue maps to the agent's team), ran it before."""
    from django.contrib.auth.models import Permission

    from calls.models import Call, QueueTeam
    from tickets.models import Team

    started: list[int] = []
    monkeypatch.setattr("calls.tasks.call_pipeline_start", started.append)
    team = Team.objects.create(name="Billing", slug="billing")
    QueueTeam.objects.create(queue_name="BillingQueue", team=team)
    call = Call.objects.create(contact_id="c-3", queue_name="BillingQueue")
    django_user_model.objects.filter(pk=agent.pk).update(is_staff=True)
    team.members.add(agent)
    agent.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_call", "change_call"])
    )
    client.force_login(agent)
    answer = client.post(
        "/admin/calls/call/",
        {"action": "rerun_pipeline", "_selected_action": [call.pk]},
        follow=True,
    )
    assert "Only supervisors can re-run the pipeline." in answer.content.decode()
    assert started == []
    client.force_login(supervisor)
    client.post("/admin/calls/call/", {"action": "rerun_pipeline", "_selected_action": [call.pk]})
    assert started == [call.pk]


def test_a_supervisor_applies_a_failed_record_again_or_closes_it(
    client, supervisor, agent, django_user_model, calls_settings, django_capture_on_commit_callbacks
):
    """Failed call records (the dead letters of the dashboard's call pipeline and the
    CallDeadLetters alarm) were applied again only if the sender redelivered them: after a
    fix, a supervisor had no way to apply one, nor to close one that never will be."""
    from calls.models import Call, CallEvent
    from calls.tests.conftest import load
    from support.models import AuditLog

    ctr = load("ctr_billing.json")
    failed = CallEvent.objects.create(
        source="ctr",
        external_id="ctr-1",
        contact_id=ctr["ContactId"],
        payload=ctr,
        status="failed",
        error="DataError: value too long",
    )
    junk = CallEvent.objects.create(
        source="ctr", external_id="ctr-2", payload={}, status="failed", error="KeyError: 'x'"
    )
    done = CallEvent.objects.create(source="ctr", external_id="ctr-3", status="processed")
    client.force_login(supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/calls/callevent/",
            {"action": "redrive", "_selected_action": [failed.pk, done.pk]},
            follow=True,
        )
    assert "1 record(s) queued to apply again; 1 left as they were" in answer.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("processed", "")
    assert Call.objects.filter(contact_id=ctr["ContactId"]).exists()
    client.post(
        "/admin/calls/callevent/", {"action": "close_unapplied", "_selected_action": [junk.pk]}
    )
    junk.refresh_from_db()
    assert junk.status == "closed"  # not "ignored": a record this app has no use for
    assert junk.error == "Closed unapplied by a supervisor (supervisor); was: KeyError: 'x'"
    assert junk.processed_at is not None  # purged by the raw event retention in time
    assert sorted(AuditLog.objects.values_list("action", "object_id")) == [
        ("call_event.close", str(junk.pk)),
        ("call_event.redrive", str(failed.pk)),
    ]
    # a staff agent given the view permission cannot: the role decides
    from django.contrib.auth.models import Permission

    again = CallEvent.objects.create(
        source="ctr", external_id="ctr-4", contact_id=ctr["ContactId"], payload={}, status="failed"
    )
    django_user_model.objects.filter(pk=agent.pk).update(is_staff=True)
    agent.user_permissions.add(Permission.objects.get(codename="view_callevent"))
    client.force_login(agent)
    client.post("/admin/calls/callevent/", {"action": "redrive", "_selected_action": [again.pk]})
    again.refresh_from_db()
    assert again.status == "failed"


def test_a_supervisor_reads_the_calls_records_and_edits_none(
    client, supervisor, agent, django_user_model
):
    """Supervisors supervise calls: the transcripts, analyses, IVR journeys, escalations
    and agent-state records were superuser-only (403 for them). They open them now, read-only
    like every record; a staff agent with no Django permission still gets 403."""
    from django.utils import timezone

    from calls.models import (
        AgentStateEvent,
        AgentStateSpan,
        Call,
        CallAnalytics,
        Escalation,
        IVRJourney,
        Transcript,
    )

    now = timezone.now()
    call = Call.objects.create(contact_id="c-sup", queue_name="BillingQueue")
    rows = {
        "transcript": Transcript.objects.create(
            call=call, source="contact_lens", segments=[{"text": "My card number is wrong"}]
        ),
        "callanalytics": CallAnalytics.objects.create(
            call=call, produced_by="local", call_summary="Card number wrong"
        ),
        "ivrjourney": IVRJourney.objects.create(call=call, outcome="completed"),
        "escalation": Escalation.objects.create(call=call, kind="ivr_failure", reason="stuck"),
        "agentstateevent": AgentStateEvent.objects.create(
            event_id="ev-1",
            event_type="STATE_CHANGE",
            agent_arn="arn:agent/ana",
            username="ana",
            occurred_at=now,
        ),
        "agentstatespan": AgentStateSpan.objects.create(
            agent_arn="arn:agent/ana", username="ana", state="Available", started_at=now
        ),
    }
    client.force_login(supervisor)
    index = client.get("/admin/").content.decode()
    for model, row in rows.items():
        listed = client.get(f"/admin/calls/{model}/")
        assert listed.status_code == 200, model
        assert f"/admin/calls/{model}/{row.pk}/change/" in listed.content.decode(), model
        assert f"/admin/calls/{model}/" in index, model
        page = client.get(f"/admin/calls/{model}/{row.pk}/change/")
        assert page.status_code == 200, model
        assert 'name="_save"' not in page.content.decode(), model  # read-only
        assert client.get(f"/admin/calls/{model}/add/").status_code == 403, model
        assert client.get(f"/admin/calls/{model}/{row.pk}/delete/").status_code == 403, model
    # A record cannot be rewritten by posting the form anyway.
    transcript = Transcript.objects.get()
    client.post(
        f"/admin/calls/transcript/{transcript.pk}/change/",
        {"call": call.pk, "source": "upload", "segments": "[]"},
    )
    transcript.refresh_from_db()
    assert (transcript.source, transcript.segments) == (
        "contact_lens",
        [{"text": "My card number is wrong"}],
    )

    django_user_model.objects.filter(pk=agent.pk).update(is_staff=True)
    client.force_login(agent)
    for model in rows:
        assert client.get(f"/admin/calls/{model}/").status_code == 403, model
