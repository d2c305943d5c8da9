"""Intake: Kinesis batches, bad records kept with clear errors, auth, duplicates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calls.models import Call, CallEvent, EventSource, EventStatus
from calls.tests.conftest import kinesis, load, on_event_bus

pytestmark = pytest.mark.django_db


def post_raw(client: Any, raw: str, capture: Any) -> Any:
    with capture(execute=True):
        return client.post("/api/calls/events", data=raw, content_type="application/json")


def test_kinesis_batch_with_one_bad_record(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    ctr2 = {**load("ctr_billing.json"), "ContactId": "c2", "Recording": None}
    batch = kinesis(load("ctr_billing.json"), ctr2)
    batch["Records"].append({"kinesis": {"data": "not-base64!!"}})
    response = post_raw(integration_client, json.dumps(batch), django_capture_on_commit_callbacks)
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


def test_invalid_json_is_kept_and_rejected(integration_client, django_capture_on_commit_callbacks):
    response = post_raw(integration_client, "{not json", django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("The body is not valid JSON")
    event = CallEvent.objects.get()
    assert (event.status, event.raw_body) == (EventStatus.FAILED, "{not json")
    assert not Call.objects.exists()


def test_missing_contact_id_is_kept_with_clear_error(
    integration_client, django_capture_on_commit_callbacks
):
    record = load("ctr_billing.json")
    record["ContactId"] = ""
    response = post_raw(integration_client, json.dumps(record), django_capture_on_commit_callbacks)
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
def test_unknown_types_are_kept(
    integration_client, record, message, django_capture_on_commit_callbacks
):
    response = post_raw(integration_client, json.dumps(record), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
    assert CallEvent.objects.get().status == EventStatus.FAILED


def test_intake_refuses_people_and_user_keys(
    api_client, agent, supervisor, outsider, calls_settings
):
    """Only an integration key may post: anonymous 401, a signed-in agent or supervisor,
    and a user API key (even a supervisor's) 403; nothing is stored."""
    from support.services import api_key_create

    body = json.dumps(load("contact_event_connected.json"))
    assert (
        api_client.post("/api/calls/events", data=body, content_type="application/json").status_code
        == 401
    )
    for user in (outsider, agent, supervisor):
        api_client.force_authenticate(user)
        response = api_client.post("/api/calls/events", data=body, content_type="application/json")
        assert response.status_code == 403, user
        assert response.json()["error"]["message"] == (
            "This endpoint takes an integration API key only."
        )
    api_client.force_authenticate(None)
    _, raw = api_key_create(name="bot", user=supervisor)
    response = api_client.post(
        "/api/calls/events",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Api-Key {raw}",
    )
    assert response.status_code == 403
    assert not CallEvent.objects.exists()


def test_session_login_is_refused(client, agent, calls_settings):
    client.force_login(agent)
    response = client.post(
        "/api/calls/events",
        data=json.dumps(load("contact_event_connected.json")),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not CallEvent.objects.exists()


def test_integration_key_can_post(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events",
            data=json.dumps(load("contact_event_connected.json")),
            content_type="application/json",
        )
    assert response.status_code == 202
    assert CallEvent.objects.get().source == EventSource.CONTACT_EVENT


def _ctr_recorded_at(location: str) -> dict[str, Any]:
    record = load("ctr_billing.json")
    record["Recording"]["Location"] = location
    return record


def _s3_created(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key, "size": 10, "eTag": "abc"},
                },
            }
        ]
    }


@pytest.mark.parametrize(
    "record",
    [
        _ctr_recorded_at("attacker-bucket/connect/x.wav"),
        {"callId": "c-1", "audioS3Uri": "s3://payroll-exports/2026/all.csv"},
        _s3_created("payroll-exports", "c-1/results.json"),
        {
            "detail-type": "Object Created",
            "source": "aws.s3",
            "id": "evb-1",
            "detail": {"bucket": {"name": "other"}, "object": {"key": "c-1/results.json"}},
        },
    ],
    ids=["ctr-recording", "seed-notification", "s3-notification", "eventbridge-s3"],
)
def test_s3_location_outside_the_allow_list_is_refused(
    integration_client, calls_settings, record, django_capture_on_commit_callbacks
):
    """The record is kept as failed (never applied, so nothing is read) with the reason;
    the other records of the body are accepted. Before, one such record refused the
    whole body (400, nothing stored: a Firehose delivery went to its backup whole)."""
    from calls.parsers import classify

    good = load("contact_event_connected.json")
    response = post_raw(
        integration_client, json.dumps([good, record]), django_capture_on_commit_callbacks
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    assert [e["index"] for e in body["errors"]] == [1]
    assert body["errors"][0]["error"].startswith("Record 1 names s3://")
    assert body["errors"][0]["error"].endswith(
        "outside CALLS_ALLOWED_S3_BUCKETS: kept as failed, not read."
    )
    refused = classify(record)
    event = CallEvent.objects.get(status=EventStatus.FAILED)
    assert (event.source, event.external_id, event.payload) == (
        refused.source,
        refused.external_id,
        record,
    )
    assert event.error == body["errors"][0]["error"]
    assert CallEvent.objects.get(status=EventStatus.PROCESSED).source == EventSource.CONTACT_EVENT
    assert list(Call.objects.values_list("contact_id", flat=True)) == [good["detail"]["contactId"]]


def test_a_body_whose_records_are_all_outside_the_allow_list_is_a_400(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    record = _ctr_recorded_at("s3://payroll-exports/c-1.wav")
    response = post_raw(integration_client, json.dumps(record), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "s3_location_not_allowed"
    assert error["message"] == (
        "Record 0 names s3://payroll-exports/c-1.wav, which is outside "
        "CALLS_ALLOWED_S3_BUCKETS: kept as failed, not read."
    )
    assert error["details"]["records"] == [{"index": 0, "error": error["message"]}]
    event = CallEvent.objects.get()
    assert (event.source, event.status) == (EventSource.CTR, EventStatus.FAILED)
    assert not Call.objects.exists()

    # Sent again once the bucket is allowed, it is applied (as any failed record is).
    calls_settings.CALLS_ALLOWED_S3_BUCKETS = ["payroll-exports"]
    response = post_raw(integration_client, json.dumps(record), django_capture_on_commit_callbacks)
    assert (response.status_code, response.json()["accepted"]) == (202, 1)
    event.refresh_from_db()
    assert (event.status, event.error) == (EventStatus.PROCESSED, "")


def test_a_broker_outage_after_the_commit_still_acknowledges_the_recorded_events(
    integration_client, calls_settings, caplog, django_capture_on_commit_callbacks
):
    """Processing is queued after the commit: a broker refusing the task was raised from
    the commit hook, a 500 for records that were saved (sent again, and by Firehose to
    its backup). They are acknowledged, and the events sweep queues them later."""
    from unittest import mock

    from kombu.exceptions import OperationalError as BrokerDown

    down = BrokerDown("Error 111 connecting to redis:6379. Connection refused.")
    with mock.patch("calls.tasks.call_event_process_task.delay", side_effect=down) as delay:
        response = post_raw(
            integration_client,
            json.dumps(kinesis(load("ctr_billing.json"))),
            django_capture_on_commit_callbacks,
        )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    event = CallEvent.objects.get()
    assert event.status == EventStatus.RECEIVED  # the sweep's (call_events_sweep)
    delay.assert_called_once_with(event.pk)
    assert "Connection refused" in caplog.text


def test_a_supervisors_re_drive_survives_a_broker_outage(
    calls_settings, supervisor, caplog, django_capture_on_commit_callbacks
):
    from unittest import mock

    from kombu.exceptions import OperationalError as BrokerDown

    from calls import services

    event = CallEvent.objects.create(
        source=EventSource.CTR,
        external_id="c-1",
        payload=load("ctr_billing.json"),
        status=EventStatus.FAILED,
        error="boom",
    )
    down = BrokerDown("Connection refused.")
    with (
        mock.patch("calls.tasks.call_event_process_task.delay", side_effect=down) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.call_event_redrive(event=event, actor=supervisor)
    delay.assert_called_once_with(event.pk)
    event.refresh_from_db()
    assert event.status == EventStatus.RECEIVED
    assert "Connection refused." in caplog.text


def test_allow_list_entries_with_prefixes(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    calls_settings.CALLS_ALLOWED_S3_BUCKETS = ["connect-recordings-example/connect/example/"]
    allowed = load("ctr_billing.json")  # connect-recordings-example/connect/example/...
    elsewhere = _ctr_recorded_at("connect-recordings-example/other/x.wav")
    elsewhere["ContactId"] = "c-2"
    assert (
        post_raw(integration_client, json.dumps(elsewhere), django_capture_on_commit_callbacks)
    ).status_code == 400
    assert (
        post_raw(integration_client, json.dumps(allowed), django_capture_on_commit_callbacks)
    ).status_code == 202
    # Without any configured bucket nothing is allowed.
    calls_settings.CALLS_ALLOWED_S3_BUCKETS = []
    calls_settings.CALLS_RECORDINGS_BUCKET = ""
    calls_settings.CALLS_OUTPUT_BUCKET = ""
    again = {**allowed, "LastUpdateTimestamp": "2026-11-20T10:10:00Z"}
    assert (
        post_raw(integration_client, json.dumps(again), django_capture_on_commit_callbacks)
    ).status_code == 400


def test_sqs_messages_naming_other_buckets_stay_on_the_queue(calls_settings):
    from calls.management.commands.calls_poll_sqs import poll_once

    class FakeSqs:
        deleted: list[str] = []

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            body = {"callId": "c-9", "audioS3Uri": "s3://someone-else/x.wav"}
            return {
                "Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": json.dumps(body)}]
            }

        def delete_message(self, **kwargs: Any) -> None:
            self.deleted.append(kwargs["ReceiptHandle"])

    sqs = FakeSqs()
    assert poll_once(sqs, "https://sqs.example/q", wait=0) == (0, 1)
    assert sqs.deleted == []
    event = CallEvent.objects.get()  # kept as failed, never read
    assert (event.source, event.status) == (EventSource.RECORDING, EventStatus.FAILED)
    assert "s3://someone-else/x.wav" in event.error


def test_recorded_event_naming_another_bucket_fails_at_read_time(calls_settings):
    """Events recorded before the allow-list existed: the worker refuses to read them."""
    from calls import transcription
    from support.errors import PermanentError

    with pytest.raises(PermanentError, match="outside CALLS_ALLOWED_S3_BUCKETS"):
        transcription.read_json_s3("s3://payroll-exports/c-1/results.json", client=object())
    call = Call.objects.create(contact_id="c-3", s3_input_uri="s3://elsewhere/a.wav")
    with pytest.raises(PermanentError, match="outside CALLS_ALLOWED_S3_BUCKETS"):
        transcription.TranscribeBackend(client=object()).start(call)


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


def test_an_older_contact_trace_record_arriving_late_does_not_undo_the_update(
    calls_settings, django_capture_on_commit_callbacks
):
    """Kinesis and EventBridge do not keep order: when an updated record (a later
    LastUpdateTimestamp) is applied first, the original arriving after it only fills
    what the update left empty; it does not put back the old queue or attributes."""
    from calls import services

    original = {
        **load("ctr_billing.json"),
        "LastUpdateTimestamp": "2026-11-20T10:10:31Z",
        "Attributes": {"case": "old", "language": "en-US"},
        "Recording": None,
    }
    update = {
        **original,
        "LastUpdateTimestamp": "2026-11-20T11:00:00Z",
        "Queue": {**original["Queue"], "Name": "SupportQueue"},
        "Attributes": {"case": "new"},
        "CustomerEndpoint": {"Address": "+14155550199", "Type": "TELEPHONE_NUMBER"},
    }
    for record in (update, original):
        with django_capture_on_commit_callbacks(execute=True):
            services.call_events_intake(body=json.dumps(record).encode())
    assert list(CallEvent.objects.values_list("status", flat=True)) == [EventStatus.PROCESSED] * 2
    call = Call.objects.get()
    assert call.queue_name == "SupportQueue"
    assert call.customer_phone == "+14155550199"
    assert call.attributes == {"case": "new", "language": "en-US"}
    assert call.raw["LastUpdateTimestamp"] == "2026-11-20T11:00:00Z"
    # In order, an update still applies.
    newer = {**update, "LastUpdateTimestamp": "2026-11-20T12:00:00Z", "Attributes": {"case": "x"}}
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(newer).encode())
    call.refresh_from_db()
    assert call.attributes == {"case": "x", "language": "en-US"}
    assert call.raw["LastUpdateTimestamp"] == "2026-11-20T12:00:00Z"


class _FakeSqs:
    """One message, delivered again until it is deleted (as SQS does)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.deleted: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        if self.deleted:
            return {"Messages": []}
        return {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": self.body}]}

    def delete_message(self, **kwargs: Any) -> None:
        self.deleted.append(kwargs["ReceiptHandle"])


def test_an_sqs_message_whose_processing_crashed_is_applied_when_redelivered(
    calls_settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The first delivery recorded the event, then applying it raised (a database blip):
    the message stays on the queue. Its redelivery found the event "received", counted it
    a duplicate and deleted the message, so the call was never recorded."""
    from calls.management.commands.calls_poll_sqs import poll_once
    from calls.services import intake

    sqs = _FakeSqs(json.dumps(load("ctr_billing.json")))
    real_apply = intake._apply

    def blip(source: str, payload: dict[str, Any]) -> str:
        raise RuntimeError("server closed the connection unexpectedly")

    monkeypatch.setattr(intake, "_apply", blip)
    assert poll_once(sqs, "https://sqs.example/q", wait=0) == (0, 1)
    assert CallEvent.objects.get().status == EventStatus.RECEIVED
    monkeypatch.setattr(intake, "_apply", real_apply)
    with django_capture_on_commit_callbacks(execute=True):
        assert poll_once(sqs, "https://sqs.example/q", wait=0) == (1, 0)
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    assert Call.objects.get().contact_id == "5ca32fbd-8f92-46af-92a5-6b0f970f0efe"


def test_a_record_still_received_is_applied_again_when_sent_again(
    calls_settings, monkeypatch, django_capture_on_commit_callbacks
):
    """Over HTTP too: a resend of a record whose processing task died is scheduled again
    (applying is idempotent: an event already processed is left alone)."""
    from calls import services
    from calls.services import intake

    body = json.dumps(load("ctr_billing.json")).encode()
    real_apply = intake._apply
    monkeypatch.setattr(intake, "_apply", lambda source, payload: 1 / 0)
    with django_capture_on_commit_callbacks(execute=True):  # the task dies (logged)
        services.call_events_intake(body=body)
    assert CallEvent.objects.get().status == EventStatus.RECEIVED
    monkeypatch.setattr(intake, "_apply", real_apply)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.call_events_intake(body=body)
    assert (result.accepted, result.duplicates) == ([], 1)
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    assert Call.objects.exists()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.call_events_intake(body=body)
    assert callbacks == []  # processed: nothing scheduled again


def test_connect_records_published_on_an_event_bus_are_the_records_they_carry(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """Seed 002: "CTR event published to EventBridge". Connect streams contact trace
    records and agent events to Kinesis; a bridge that publishes them on an EventBridge bus
    wraps each in the bus's envelope under a detail-type of its own, and the rule's API
    destination posts that here. Before: 400 "Unknown EventBridge detail-type" and the call
    never recorded. Each is the record it carries, under the same key as from the stream,
    so one that also comes from the stream is a duplicate."""
    from calls.models import AgentStateEvent

    ctr, agent = load("ctr_billing.json"), load("agent_state_acw.json")
    body = [on_event_bus("Contact Trace Record", ctr), on_event_bus("Agent Event", agent)]
    response = post_raw(integration_client, json.dumps(body), django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2, "duplicates": 0, "errors": []}
    assert sorted(CallEvent.objects.values_list("source", "external_id", "status")) == [
        (EventSource.AGENT_EVENT, agent["EventId"], EventStatus.PROCESSED),
        (
            EventSource.CTR,
            f"{ctr['ContactId']}:{ctr['LastUpdateTimestamp']}",
            EventStatus.PROCESSED,
        ),
    ]
    call = Call.objects.get()
    assert (call.contact_id, call.queue_name, call.agent_username) == (
        ctr["ContactId"],
        "BillingQueue",
        "jdoe",
    )
    assert call.raw == ctr
    assert AgentStateEvent.objects.get().state == "AfterContactWork"
    again = post_raw(
        integration_client, json.dumps(kinesis(ctr, agent)), django_capture_on_commit_callbacks
    )
    assert again.json() == {"accepted": 0, "duplicates": 2, "errors": []}


def test_a_record_on_an_event_bus_names_its_s3_objects_like_any_other(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """The allow-list reads the record inside the envelope: a CTR naming another bucket is
    refused (kept as failed, not read), as from the stream."""
    ctr = _ctr_recorded_at("s3://someone-elses-bucket/secret.wav")
    response = post_raw(
        integration_client,
        json.dumps(on_event_bus("Contact Trace Record", ctr)),
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "s3_location_not_allowed"
    event = CallEvent.objects.get()
    assert (event.source, event.status) == (EventSource.CTR, EventStatus.FAILED)
    assert not Call.objects.exists()


def test_a_caller_number_without_digits_matches_nobody(db):
    """A withheld number ("+anonymous", "+ (withheld)") normalises to "+": it must not
    match a customer whose number was stored as "+" (or nothing at all)."""
    from calls.selectors import customer_for_phone
    from tickets.models import Customer

    Customer.objects.create(name="Plus", phone="+")
    Customer.objects.create(name="Real", phone="+15550100")
    for number in ("+anonymous", "+ (withheld)", "+", ""):
        assert customer_for_phone(number) is None, number
    found = customer_for_phone("+1 555-0100")
    assert found is not None
    assert found.name == "Real"
