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
    call = Call.objects.create(contact_id="c-2")
    response = client.post(
        "/admin/calls/call/",
        {"action": "rerun_pipeline", "_selected_action": [call.pk], "index": 0},
    )
    assert response.status_code == 302
    assert started == [call.pk]
