"""Formats the intake gained: S3's ``s3:TestEvent``, seed 003's flat ``results.json``,
the "Customer service" category, and Amazon Data Firehose HTTP endpoint deliveries."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from calls.analytics import providers
from calls.management.commands.calls_poll_sqs import poll_once
from calls.models import (
    AnalyticsPath,
    Call,
    CallAnalytics,
    CallEvent,
    EventSource,
    EventStatus,
    Transcript,
)
from calls.parsers import parse_result
from calls.tests.conftest import load, place_result

pytestmark = pytest.mark.django_db
BILLING_ID = "5ca32fbd-8f92-46af-92a5-6b0f970f0efe"

# What S3 sends when an event notification to the queue is configured (S3 user guide,
# "Event message structure": the test message).
S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-11-20T12:00:00.000Z",
    "Bucket": "bda-output",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


# --- S3's test event ---------------------------------------------------------------------


def test_s3_test_event_on_the_queue_is_recorded_ignored_and_deleted(
    calls_settings, django_capture_on_commit_callbacks
):
    """It was an unknown record: left on the queue (→ its dead-letter queue) and kept as a
    failed event, which the failed-events alert counts."""
    calls_settings.AWS_REGION = "us-east-1"
    calls_settings.CALLS_OUTPUT_BUCKET = "bda-output"
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="persistence")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(S3_TEST_EVENT))
        with django_capture_on_commit_callbacks(execute=True):
            assert poll_once(sqs, url, wait=0) == (1, 0)
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    waiting = attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]
    assert waiting == ("0", "0")
    event = CallEvent.objects.get()
    assert (event.source, event.external_id, event.status, event.error) == (
        EventSource.S3,
        "s3:TestEvent:5582815E1AEA5ADF",
        EventStatus.IGNORED,
        "",
    )
    assert not Call.objects.exists()


def test_s3_test_event_over_sns_to_the_events_endpoint_is_acknowledged(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    wrapped = {"Type": "Notification", "Message": json.dumps(S3_TEST_EVENT)}
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(wrapped), content_type="application/json"
        )
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    assert CallEvent.objects.get().status == EventStatus.IGNORED


# --- seed 003's results.json with its outputs by name --------------------------------------

SEED_003_RESULTS = {
    "call_summary": "The customer was charged twice for the monthly fee; a refund was issued.",
    "call_categories": ["Billing", "Customer service"],
    "topics": ["payment", "invoice"],
    "transcript": (
        "[spk_0]: Thank you for calling Example Bank, how can I help?\n"
        "[spk_1]: I was charged twice on my last invoice and I want a refund.\n"
        "[spk_0]: I have refunded the second charge."
    ),
    "audio_summary": "A customer reports a double charge; the agent refunds it.",
    "topic_summary": "Double charge on the invoice, refunded.",
    "audio_content_moderation": {"categories": [], "severity": "NONE"},
}


def test_a_local_results_json_with_seed_003_outputs_by_name_is_the_calls_analytics(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    """The local backend looked for transcribe.json / result.json only, and a flat
    results.json failed as "Not a Transcribe result"."""
    place_result(BILLING_ID, "results.json", SEED_003_RESULTS)
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events",
            data=json.dumps(load("ctr_billing.json")),
            content_type="application/json",
        )
    assert response.status_code == 202
    call = Call.objects.get(contact_id=BILLING_ID)
    assert (call.pipeline_status, call.pipeline_error) == ("analysed", "")
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    assert (
        analytics.call_summary,
        analytics.call_categories,
        analytics.topics,
        analytics.audio_summary,
        analytics.topic_summary,
        analytics.content_moderation,
    ) == (
        SEED_003_RESULTS["call_summary"],
        ["Billing", "Customer service"],
        ["payment", "invoice"],
        SEED_003_RESULTS["audio_summary"],
        SEED_003_RESULTS["topic_summary"],
        [{"categories": [], "severity": "NONE"}],
    )
    transcript = Transcript.objects.get(call=call)
    assert [(s["speaker"], s["text"]) for s in transcript.segments] == [
        ("Agent", "Thank you for calling Example Bank, how can I help?"),
        ("Customer", "I was charged twice on my last invoice and I want a refund."),
        ("Agent", "I have refunded the second charge."),
    ]


def test_a_custom_output_with_seed_003_outputs_under_inference_result_parses():
    """Seed 003's persistence step reads them all from ``inference_result``."""
    doc = {
        "matched_blueprint": {"arn": "arn:aws:bedrock:us-east-1:123456789012:blueprint/b"},
        "inference_result": SEED_003_RESULTS,
    }
    result = parse_result(doc)
    assert (result.source, result.summary, result.categories, result.topics) == (
        "data_automation",
        SEED_003_RESULTS["call_summary"],
        ["Billing", "Customer service"],
        ["payment", "invoice"],
    )
    assert result.text == SEED_003_RESULTS["transcript"]


# --- "Customer service" -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I've been on hold for an hour, can I speak to a manager please?", ["Customer service"]),
        ("How do I contact customer service? I need a real person.", ["Customer service"]),
        # the agent's stock line, in calls of every kind, is not the call's category
        ("Our customer support team is available around the clock.", []),
        ("Thank you for calling customer service.", []),
    ],
)
def test_customer_service_is_a_category_the_rules_give(text, expected):
    assert providers.classify_categories(text) == expected


def test_a_model_naming_customer_service_keeps_it():
    assert providers.known_categories(["Billing", "customer  service"]) == [
        "Billing",
        "Customer service",
    ]


# --- Amazon Data Firehose HTTP endpoint ------------------------------------------------------

REQUEST_ID = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"


def firehose(*records: Any, timestamp: int = 1764500000000, bad: int = 0) -> dict[str, Any]:
    """A delivery as Firehose's HTTP endpoint destination posts it."""
    data = [base64.b64encode(json.dumps(r).encode()).decode() for r in records]
    return {
        "requestId": REQUEST_ID,
        "timestamp": timestamp,
        "records": [{"data": d} for d in data] + [{"data": "not-base64!!"}] * bad,
    }


def post_firehose(
    client: Any, body: bytes, key: str, capture: Any, request_id: str = REQUEST_ID, **extra: Any
) -> Any:
    with capture(execute=True):
        return client.post(
            "/api/calls/events",
            data=body,
            content_type="application/json",
            HTTP_X_AMZ_FIREHOSE_PROTOCOL_VERSION="1.0",
            HTTP_X_AMZ_FIREHOSE_REQUEST_ID=request_id,
            HTTP_X_AMZ_FIREHOSE_ACCESS_KEY=key,
            HTTP_X_AMZ_FIREHOSE_SOURCE_ARN=(
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/connect-ctr"
            ),
            **extra,
        )


def test_a_firehose_delivery_is_recorded_then_answered_in_firehoses_shape(
    api_client, integration_key, calls_settings, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    ctr = load("ctr_billing.json")
    agent = load("agent_state_acw.json")
    body = json.dumps(firehose(ctr, agent, bad=1)).encode()
    response = post_firehose(api_client, body, integration_key[1], capture)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"requestId", "timestamp"}
    assert answer["requestId"] == REQUEST_ID
    assert isinstance(answer["timestamp"], int)
    assert Call.objects.get().contact_id == BILLING_ID
    recorded = sorted(CallEvent.objects.values_list("source", "status"))
    assert recorded == sorted(
        [
            (EventSource.CTR, EventStatus.PROCESSED),
            (EventSource.AGENT_EVENT, EventStatus.PROCESSED),
            (EventSource.UNKNOWN, EventStatus.FAILED),
        ]
    )

    # Firehose retries a request whose answer it did not get: the same requestId (its
    # timestamp may differ), gzipped this time. Nothing is recorded twice.
    again = gzip.compress(json.dumps(firehose(ctr, agent, timestamp=1764500060000, bad=1)).encode())
    response = post_firehose(
        api_client, again, integration_key[1], capture, HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 200
    assert CallEvent.objects.count() == 3


def test_a_firehose_record_naming_another_bucket_fails_alone(
    api_client, integration_key, calls_settings, django_capture_on_commit_callbacks
):
    """One contact trace record whose recording is in a bucket outside the allow-list
    made the whole delivery a 400, and Firehose sent every record of it to its backup.
    That record is kept as failed (nothing read) and the others are applied."""
    elsewhere = {**load("ctr_billing.json"), "ContactId": "c-elsewhere"}
    elsewhere["Recording"] = {**elsewhere["Recording"], "Location": "payroll/x.wav"}
    body = json.dumps(firehose(load("ctr_billing.json"), elsewhere)).encode()
    response = post_firehose(
        api_client, body, integration_key[1], django_capture_on_commit_callbacks
    )
    assert response.status_code == 200
    assert set(response.json()) == {"requestId", "timestamp"}
    events = CallEvent.objects.order_by("pk")
    assert [(e.contact_id, e.source, e.status, e.error) for e in events] == [
        (
            "c-elsewhere",
            EventSource.CTR,
            EventStatus.FAILED,
            "Record 1 names s3://payroll/x.wav, which is outside "
            "CALLS_ALLOWED_S3_BUCKETS: kept as failed, not read.",
        ),
        (BILLING_ID, EventSource.CTR, EventStatus.PROCESSED, ""),
    ]
    assert list(Call.objects.values_list("contact_id", flat=True)) == [BILLING_ID]


def test_a_broker_outage_still_answers_firehose_200(
    api_client, integration_key, calls_settings, django_capture_on_commit_callbacks
):
    """A 5xx after the records were saved made Firehose retry, then back them up."""
    from unittest import mock

    from kombu.exceptions import OperationalError as BrokerDown

    body = json.dumps(firehose(load("ctr_billing.json"))).encode()
    with mock.patch("calls.tasks.call_event_process_task.delay", side_effect=BrokerDown("refused")):
        response = post_firehose(
            api_client, body, integration_key[1], django_capture_on_commit_callbacks
        )
    assert response.status_code == 200
    assert CallEvent.objects.get().status == EventStatus.RECEIVED  # the sweep's


def test_firehose_access_key_is_checked_as_an_integration_api_key(
    api_client, supervisor, calls_settings, django_capture_on_commit_callbacks
):
    from support.services import api_key_create

    body = json.dumps(firehose(load("ctr_billing.json"))).encode()
    capture = django_capture_on_commit_callbacks
    response = post_firehose(api_client, body, "not-a-key", capture)
    assert response.status_code == 401
    assert response.json()["requestId"] == REQUEST_ID
    assert response.json()["errorMessage"] == "Invalid API key."
    _, user_key = api_key_create(name="bot", user=supervisor)
    response = post_firehose(api_client, body, user_key, capture)
    assert response.status_code == 403
    assert response.json()["errorMessage"] == "This endpoint takes an integration API key only."
    assert not CallEvent.objects.exists()


def test_a_firehose_delivery_of_only_bad_records_is_kept_and_answered_with_its_error(
    api_client, integration_key, calls_settings, django_capture_on_commit_callbacks
):
    body = json.dumps(firehose(bad=1)).encode()
    response = post_firehose(
        api_client, body, integration_key[1], django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"requestId", "timestamp", "errorMessage"}
    assert answer["errorMessage"].startswith("Firehose records[0].data is not base64 JSON")
    assert CallEvent.objects.get().status == EventStatus.FAILED
