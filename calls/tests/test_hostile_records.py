"""Hostile or malformed records: a clear 400 (or a record kept as failed), never a 500,
and never an event left ``received`` for ever (a redelivery would count it a duplicate,
so the call would be lost)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import Call, CallEvent, EventStatus
from calls.tests.conftest import load

pytestmark = pytest.mark.django_db


def ctr(contact_id: str, **fields: Any) -> dict[str, Any]:
    return {**load("ctr_billing.json"), "ContactId": contact_id, **fields}


def agent_event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {**load("agent_state_acw.json"), "EventId": event_id, **fields}


def s3_notification(s3: Any) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "s3": s3}]}


@pytest.fixture
def raising_client(integration_key: tuple[Any, str]) -> APIClient:
    """Server errors answer 500 instead of raising in the test."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {integration_key[1]}")
    return client


# (body, what the 400's message says)
REFUSED_AT_INTAKE: dict[str, tuple[str, str]] = {
    "contact event detail is text": (
        json.dumps({"detail-type": "Amazon Connect Contact Event", "id": "e1", "detail": "x"}),
        "detail must be an object",
    ),
    "transcribe detail is a list": (
        json.dumps({"detail-type": "Transcribe Job State Change", "id": "e2", "detail": [1]}),
        "detail must be an object",
    ),
    "eventbridge s3 object is text": (
        json.dumps({"detail-type": "Object Created", "id": "e3", "detail": {"object": "k"}}),
        "detail.object must be an object",
    ),
    "s3 notification s3 is text": (
        json.dumps(s3_notification("x")),
        "Records[0].s3 must be an object",
    ),
    "s3 notification bucket is text": (
        json.dumps(s3_notification({"bucket": "b", "object": {"key": "c-1/results.json"}})),
        "Records[0].s3.bucket must be an object",
    ),
    "kinesis record is text": (
        json.dumps({"Records": [{"kinesis": "x"}]}),
        "Records[0].kinesis must be an object",
    ),
    "contact id is an object": (
        json.dumps(ctr("x", ContactId={"a": 1})),
        "ContactId must be a string",
    ),
    "contact id too long": (
        json.dumps(ctr("c" * 129)),
        "ContactId is longer than 128 characters",
    ),
    "call id too long": (
        json.dumps({"callId": "n" * 129, "audioS3Uri": "s3://connect-recordings-example/a"}),
        "callId is longer than 128 characters",
    ),
    "audio uri too long": (
        json.dumps({"callId": "n1", "audioS3Uri": "s3://connect-recordings-example/" + "a" * 1100}),
        "audioS3Uri is longer than 1024",
    ),
    "agent event id too long": (
        json.dumps(agent_event("e" * 65)),
        "EventId is longer than 64 characters",
    ),
    "NaN": ('{"ContactId": "nan-1", "InitiationTimestamp": NaN}', "NaN"),
    "Infinity": ('{"ContactId": "inf-1", "InitiationTimestamp": -Infinity}', "Infinity"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_AT_INTAKE))
def test_malformed_records_answer_400_and_are_kept_as_failed(
    name, raising_client, calls_settings, django_capture_on_commit_callbacks
):
    body, message = REFUSED_AT_INTAKE[name]
    with django_capture_on_commit_callbacks(execute=True):
        response = raising_client.post(
            "/api/calls/events", data=body, content_type="application/json"
        )
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    event = CallEvent.objects.get()
    assert event.status == EventStatus.FAILED
    assert message in event.error
    assert not Call.objects.exists()


# Records that are recognised (so accepted with 202) but cannot be applied: each must end
# as a failed event with the reason, not stay "received".
FAILED_WHEN_APPLIED: dict[str, tuple[dict[str, Any], str]] = {
    "agent is text": (ctr("p1", Agent="bob"), "Agent must be an object"),
    "queue is a list": (ctr("p2", Queue=[1]), "Queue must be an object"),
    "recording is text": (ctr("p3", Recording="s3://x/y"), "Recording must be an object"),
    "recordings hold text": (
        ctr("p4", Recording=None, Recordings=["x"]),
        "Recordings[0] must be an object",
    ),
    "customer endpoint is text": (
        ctr("p5", CustomerEndpoint="+14155550100"),
        "CustomerEndpoint must be an object",
    ),
    "epoch beyond any date": (ctr("p6", InitiationTimestamp=1e300), "Bad timestamp"),
    "negative epoch": (ctr("p7", InitiationTimestamp=-1e18), "Bad timestamp"),
    "boolean timestamp": (ctr("p8", InitiationTimestamp=True), "Bad timestamp"),
    "year 1 with an offset": (
        ctr("p9", InitiationTimestamp="0001-01-01T00:00:00+05:00"),
        "outside 2000-2099",
    ),
    "year 9999 with an offset": (
        ctr("p10", InitiationTimestamp="9999-12-31T23:59:59-05:00"),
        "outside 2000-2099",
    ),
    "a timestamp next year": (
        ctr("p10b", InitiationTimestamp=(timezone.now() + timedelta(days=400)).isoformat()),
        "is more than a day in the future",
    ),
    "disconnected before it began": (
        ctr("p11", InitiationTimestamp="2026-11-20T12:00:00Z"),  # disconnect 10:08:40
        "DisconnectTimestamp 2026-11-20T10:08:40Z is before InitiationTimestamp",
    ),
    "channel too long": (ctr("p12", Channel="V" * 17), "Channel is longer than 16"),
    "disconnect reason too long": (
        ctr("p13", DisconnectReason="D" * 65),
        "DisconnectReason is longer than 64",
    ),
    "queue name too long": (ctr("p14", Queue={"Name": "Q" * 129}), "Queue.Name is longer"),
    "phone number too long": (
        ctr("p15", CustomerEndpoint={"Address": "1" * 40, "Type": "TELEPHONE_NUMBER"}),
        "CustomerEndpoint.Address is longer",
    ),
    "flow log entries are text": (
        ctr("p16", ContactFlowLogs=["x", 1]),
        "ContactFlowLogs[0] must be an object",
    ),
    "agent snapshot is text": (
        agent_event("a1", CurrentAgentSnapshot="x"),
        "CurrentAgentSnapshot must be an object",
    ),
    "agent contacts hold text": (
        agent_event("a2", CurrentAgentSnapshot={"Contacts": ["x"]}),
        "Contacts[0] must be an object",
    ),
    "agent state start far away": (
        agent_event(
            "a3",
            CurrentAgentSnapshot={"AgentStatus": {"Name": "Available", "StartTimestamp": 1e20}},
        ),
        "Bad timestamp",
    ),
    "contact id of an S3 result too long": (
        s3_notification(
            {
                "bucket": {"name": "connect-recordings-example"},
                "object": {"key": "c" * 129 + "/results.json", "eTag": "1"},
            }
        ),
        "The S3 key's contact id is longer than 128 characters",
    ),
}


@pytest.mark.parametrize("name", sorted(FAILED_WHEN_APPLIED))
def test_records_that_cannot_be_applied_are_kept_as_failed(
    name, integration_client, calls_settings, django_capture_on_commit_callbacks
):
    record, message = FAILED_WHEN_APPLIED[name]
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(record), content_type="application/json"
        )
    assert response.status_code == 202
    event = CallEvent.objects.get()
    assert event.status == EventStatus.FAILED, event.error
    assert message in event.error
    assert not Call.objects.exists()


def test_a_deeply_nested_ivr_journey_attribute_is_no_journey(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """The flow-set ``ivr_journey`` attribute is JSON in a string: read like any JSON
    from outside (json.loads raised RecursionError on it)."""
    record = ctr("deep-1", Attributes={"ivr_journey": "[" * 100_000 + "]" * 100_000})
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(record), content_type="application/json"
        )
    assert response.status_code == 202
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    assert Call.objects.get().ivr_journey.steps == []


# Transcription results (a Transcribe or Data Automation JSON read from storage or S3) of
# the wrong shape: the call fails with the reason instead of the task crashing and the
# call staying "received" with no error.
BAD_RESULTS: dict[str, tuple[str, str]] = {
    "transcripts hold text": (json.dumps({"results": {"transcripts": ["x"]}}), "[0] must be"),
    "audio segments hold text": (
        json.dumps({"results": {"transcripts": [{"transcript": "hi"}], "audio_segments": ["x"]}}),
        "results.audio_segments[0] must be an object",
    ),
    "items hold text": (
        json.dumps({"results": {"transcripts": [{"transcript": "hi"}], "items": ["x"]}}),
        "results.items[0] must be an object",
    ),
    "speaker segment without times": (
        json.dumps(
            {
                "results": {
                    "transcripts": [{"transcript": "hi"}],
                    "speaker_labels": {"segments": [{"speaker_label": "spk_0"}]},
                    "items": [{"start_time": "1.0", "alternatives": [{"content": "hi"}]}],
                }
            }
        ),
        "start_time must be a number",
    ),
    "segment time not a number": (
        json.dumps(
            {
                "results": {
                    "transcripts": [{"transcript": "hi"}],
                    "audio_segments": [{"start_time": "abc"}],
                }
            }
        ),
        "start_time must be a number",
    ),
    "data automation transcript is text": (
        json.dumps({"audio": {"transcript": "x"}}),
        "audio.transcript must be an object",
    ),
    "data automation topics hold text": (
        json.dumps({"audio": {"transcript": {"representation": {"text": "hi"}}, "topics": ["x"]}}),
        "audio.topics[0] must be an object",
    ),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "nested more than"),
}


@pytest.mark.parametrize("name", sorted(BAD_RESULTS))
def test_a_malformed_transcription_result_fails_the_call_with_the_reason(
    name, calls_settings, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from calls import services
    from calls.models import PipelineStatus

    doc, message = BAD_RESULTS[name]
    record = load("ctr_billing.json")
    default_storage.save(f"calls/results/{record['ContactId']}/transcribe.json", ContentFile(doc))
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(record).encode())
    call = Call.objects.get()
    assert call.pipeline_status == PipelineStatus.FAILED
    assert message in call.pipeline_error


@pytest.mark.parametrize("name", sorted(BAD_RESULTS))
def test_a_malformed_result_in_s3_is_a_permanent_error(name, calls_settings):
    import io

    from calls.transcription import result_from_s3_object
    from support.errors import PermanentError

    doc, message = BAD_RESULTS[name]

    class S3:
        def get_object(self, **kwargs: Any) -> dict[str, Any]:
            return {"Body": io.BytesIO(doc.encode())}

    with pytest.raises(
        PermanentError, match=r"^s3://connect-recordings-example/c/x\.json: "
    ) as exc:
        result_from_s3_object("s3://connect-recordings-example/c/x.json", client=S3())
    assert message in str(exc.value)


def test_a_nul_in_a_transcription_result_is_kept_as_a_replacement_character(
    calls_settings, django_capture_on_commit_callbacks
):
    """PostgreSQL text cannot hold NUL: saving the transcript failed (DataError) and the
    call stayed "received"; as for received events, NUL becomes U+FFFD."""
    from calls import services
    from calls.tests.conftest import place_result

    record = load("ctr_billing.json")
    doc = {"results": {"transcripts": [{"transcript": "card\x00number"}]}}
    place_result(record["ContactId"], "transcribe.json", doc)
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(record).encode())
    call = Call.objects.get()
    assert call.transcript.text == "card\ufffdnumber"


def _kinesis(record: dict[str, Any]) -> dict[str, Any]:
    import base64

    data = base64.b64encode(json.dumps(record).encode()).decode()
    return {"Records": [{"kinesis": {"data": data}}]}


@pytest.mark.parametrize("wrap", ["kinesis", "sns"])
def test_a_nul_inside_a_kinesis_record_or_an_sns_message_is_kept_as_a_replacement_character(
    wrap, raising_client, calls_settings, django_capture_on_commit_callbacks
):
    """The body's own NULs were replaced, but not those of records decoded from it (Kinesis
    base64 data, an SNS envelope's Message): storing them failed in PostgreSQL, a 500."""
    record = {**load("ctr_billing.json"), "Attributes": {"note": "a\x00b"}}
    if wrap == "kinesis":
        body = _kinesis(record)
    else:
        body = {"Type": "Notification", "Message": json.dumps(record)}
    with django_capture_on_commit_callbacks(execute=True):
        response = raising_client.post(
            "/api/calls/events", data=json.dumps(body), content_type="application/json"
        )
    assert response.status_code == 202, response.content
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    assert Call.objects.get().attributes["note"] == "a\ufffdb"


def test_a_timestamp_without_a_time_zone_is_read_as_utc(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """Connect writes its timestamps in UTC; one sent without the Z is not refused."""
    record = ctr("naive-1", DisconnectTimestamp="2026-11-20T10:08:40")
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(record), content_type="application/json"
        )
    assert response.status_code == 202
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    call = Call.objects.get()
    assert call.disconnected_at is not None
    assert call.disconnected_at.isoformat() == "2026-11-20T10:08:40+00:00"


def test_a_screen_recording_listed_first_is_not_taken_for_the_call_audio(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """CTR ``Recordings`` lists voice and screen recordings; only the audio is transcribed
    (before, whichever came first was taken)."""
    bucket = calls_settings.CALLS_RECORDINGS_BUCKET
    record = ctr(
        "screen-1",
        Recording=None,
        Recordings=[
            {"Location": f"{bucket}/screen/s.webm", "MediaStreamType": "VIDEO"},
            {"Location": f"{bucket}/voice/v.wav", "MediaStreamType": "AUDIO"},
        ],
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(record), content_type="application/json"
        )
    assert response.status_code == 202
    assert Call.objects.get().recording_location == f"s3://{bucket}/voice/v.wav"
