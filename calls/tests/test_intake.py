"""Intake: Kinesis batches, bad records kept with clear errors, auth, duplicates."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from calls.models import Call, CallEvent, EventSource, EventStatus
from calls.tests.conftest import load

pytestmark = pytest.mark.django_db


def post_raw(client: Any, raw: str, capture: Any) -> Any:
    with capture(execute=True):
        return client.post("/api/calls/events", data=raw, content_type="application/json")


def kinesis(*records: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": f"4959033022767391722317744727084645658{i}",
                    "data": base64.b64encode(json.dumps(r).encode()).decode(),
                    "approximateArrivalTimestamp": 1732550400.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:4959033022767391722317744727084645658{i}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/connect-ctr",
            }
            for i, r in enumerate(records)
        ]
    }


def test_kinesis_batch_with_one_bad_record(
    agent_client, calls_settings, django_capture_on_commit_callbacks
):
    ctr2 = {**load("ctr_billing.json"), "ContactId": "c2", "Recording": None}
    batch = kinesis(load("ctr_billing.json"), ctr2)
    batch["Records"].append({"kinesis": {"data": "not-base64!!"}})
    response = post_raw(agent_client, json.dumps(batch), django_capture_on_commit_callbacks)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert len(body["errors"]) == 1
    assert body["errors"][0]["index"] == 2
    assert body["errors"][0]["error"].startswith("Kinesis record data is not base64 JSON")
    assert sorted(Call.objects.values_list("contact_id", flat=True)) == [
        "5ca32fbd-8f92-46af-92a5-6b0f970f0efe",
        "c2",
    ]
    assert (
        CallEvent.objects.filter(status=EventStatus.FAILED, source=EventSource.UNKNOWN).count() == 1
    )


def test_invalid_json_is_kept_and_rejected(agent_client, django_capture_on_commit_callbacks):
    response = post_raw(agent_client, "{not json", django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("The body is not valid JSON")
    event = CallEvent.objects.get()
    assert (event.status, event.raw_body) == (EventStatus.FAILED, "{not json")
    assert not Call.objects.exists()


def test_missing_contact_id_is_kept_with_clear_error(
    agent_client, django_capture_on_commit_callbacks
):
    record = load("ctr_billing.json")
    record["ContactId"] = ""
    response = post_raw(agent_client, json.dumps(record), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Contact trace record without ContactId."
    event = CallEvent.objects.get()
    assert (event.status, event.error) == (
        EventStatus.FAILED,
        "Contact trace record without ContactId.",
    )
    assert event.payload is not None
    assert event.payload["AWSAccountId"] == "123456789012"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"detail-type": "EC2 Instance State-change Notification", "detail": {}},
            "Unknown EventBridge detail-type 'EC2 Instance State-change Notification'.",
        ),
        (
            {**load("agent_state_acw.json"), "EventType": "DANCE"},
            "Unknown agent EventType 'DANCE'.",
        ),
        ({"hello": "world"}, "Unknown record"),
    ],
)
def test_unknown_types_are_kept(agent_client, record, message, django_capture_on_commit_callbacks):
    response = post_raw(agent_client, json.dumps(record), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
    assert CallEvent.objects.get().status == EventStatus.FAILED


def test_intake_needs_an_agent(api_client, client, outsider):
    assert api_client.post(
        "/api/calls/events", data="{}", content_type="application/json"
    ).status_code in (401, 403)
    api_client.force_authenticate(outsider)
    assert (
        api_client.post("/api/calls/events", data="{}", content_type="application/json").status_code
        == 403
    )
    assert not CallEvent.objects.exists()


def test_api_key_can_post(api_client, agent, calls_settings, django_capture_on_commit_callbacks):
    from support.models import ApiKey
    from support.services import hash_api_key

    ApiKey.objects.create(
        name="connect", prefix="ck_test", key_hash=hash_api_key("ck_test_secret"), user=agent
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            "/api/calls/events",
            data=json.dumps(load("contact_event_connected.json")),
            content_type="application/json",
            HTTP_AUTHORIZATION="Api-Key ck_test_secret",
        )
    assert response.status_code == 202
    assert CallEvent.objects.get().source == EventSource.CONTACT_EVENT


def test_failed_record_sent_again_is_retried(calls_settings, django_capture_on_commit_callbacks):
    from calls import services

    bad = {**load("ctr_billing.json"), "InitiationTimestamp": "yesterday-ish"}
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(bad).encode())
    event = CallEvent.objects.get()
    assert event.status == EventStatus.FAILED
    assert "Bad timestamp 'yesterday-ish'" in event.error
    with django_capture_on_commit_callbacks(execute=True):
        result = services.call_events_intake(body=json.dumps(bad).encode())
    assert result.accepted == [event.pk]


def test_concurrent_insert_falls_back_to_one_by_one(calls_settings, monkeypatch):
    from django.db import IntegrityError

    from calls import services
    from calls.models import CallEvent as Event

    first = load("contact_event_connected.json")
    second = {**first, "id": "another-event-id"}
    Event.objects.create(source=EventSource.CONTACT_EVENT, external_id=first["id"], payload=first)

    def racing_bulk_create(objs, *args, **kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(Event.objects, "bulk_create", racing_bulk_create)
    # The SELECT misses the first (as if a concurrent request inserted it meanwhile).
    real_filter = Event.objects.filter
    monkeypatch.setattr(Event.objects, "filter", lambda *a, **k: real_filter(pk=-1))
    result = services.call_events_intake(body=json.dumps([first, second]).encode(), schedule=False)
    assert (len(result.accepted), result.duplicates) == (1, 1)
    assert Event.objects.count() == 2
