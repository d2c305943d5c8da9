"""AWS paths: SNS (signed) → Data Automation (Stubber) → S3 result; S3 events over SQS
(moto); Amazon Transcribe (moto); Bedrock converse (Stubber).

Over ~500 lines on purpose: one end-to-end path per AWS service, each test building its
own fakes; splitting would scatter the shared Stubber and moto set-up."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
import responses
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from moto import mock_aws

from calls import sns, transcription
from calls.analytics.providers import ModelProvider
from calls.management.commands.calls_poll_sqs import poll_once
from calls.models import AnalyticsPath, Call, CallAnalytics, CallEvent, EventStatus, Transcript
from calls.parsers import Segment
from calls.tests.conftest import load
from support.errors import RetryableError

pytestmark = pytest.mark.django_db
TOPIC = "arn:aws:sns:us-east-1:123456789012:dmg-inbound-callrecording-transcript"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
CALL_ID = "3f0c9b1e-2222-4c1d-8e77-0a1b2c3d4e5f"
BDA_ARN = "arn:aws:bedrock:us-east-1:123456789012:data-automation-invocation/8a7e4c1b"


def bedrock_provider(client: Any, model_id: str = "m") -> ModelProvider:
    """The shared-registry summary provider on a real BedrockModel whose bedrock-runtime
    client is ``client`` (stubbed with botocore's Stubber: BedrockModel(streaming=False)
    calls ``converse``)."""
    from strands.models.bedrock import BedrockModel

    def model() -> BedrockModel:
        bedrock = BedrockModel(model_id=model_id, streaming=False, region_name="us-east-1")
        bedrock.client = client
        return bedrock

    return ModelProvider("bedrock", model_factory=model, sleep=lambda _seconds: None)


def analysis_turn(answer: dict[str, Any], tokens: tuple[int, int] = (1, 1)) -> dict[str, Any]:
    """A ``converse`` answer calling the structured-output tool with ``answer``."""
    use = {"toolUse": {"toolUseId": "t1", "name": "CallAnalysisOutput", "input": answer}}
    return {
        "output": {"message": {"role": "assistant", "content": [use]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
        "metrics": {"latencyMs": 1},
    }


class FakeHttp:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def get(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem if url.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"


@pytest.fixture
def signer(monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    fake = FakeHttp(cert.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setattr(sns, "http", fake)

    def sign(message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
        signature = key.sign(sns.string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    sign.http = fake  # type: ignore[attr-defined]
    return sign


@pytest.fixture
def aws(calls_settings):
    calls_settings.AWS_REGION = "us-east-1"
    calls_settings.CALLS_OUTPUT_BUCKET = "bda-output"
    calls_settings.CALLS_ALLOWED_S3_BUCKETS = [
        "connect-recordings-example",
        "recordings-example/calls/",
        "bda-output",
    ]
    calls_settings.CALLS_SNS_TOPIC_ARNS = [TOPIC]
    calls_settings.CALLS_BDA_PROJECT_ARN = (
        "arn:aws:bedrock:us-east-1:123456789012:data-automation-project/p1"
    )
    calls_settings.CALLS_BDA_PROFILE_ARN = (
        "arn:aws:bedrock:us-east-1:123456789012:data-automation-profile/us.data-automation-v1"
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bda-output")
        yield s3


def put_bda_outputs(s3: Any, prefix: str = CALL_ID) -> None:
    base = f"s3://bda-output/{prefix}"
    s3.put_object(
        Bucket="bda-output",
        Key=f"{prefix}/standard_output/0/result.json",
        Body=json.dumps(load("bda_standard_output.json")),
    )
    s3.put_object(
        Bucket="bda-output",
        Key=f"{prefix}/custom_output/0/result.json",
        Body=json.dumps(load("bda_custom_output.json")),
    )
    s3.put_object(
        Bucket="bda-output",
        Key=f"{prefix}/job_metadata.json",
        Body=json.dumps(
            {
                "job_id": "8a7e4c1b",
                "job_status": "PROCESSED",
                "semantic_modality": "AUDIO",
                "output_metadata": [
                    {
                        "asset_id": 0,
                        "segment_metadata": [
                            {
                                "standard_output_path": f"{base}/standard_output/0/result.json",
                                "custom_output_status": "MATCH",
                                "custom_output_path": f"{base}/custom_output/0/result.json",
                            }
                        ],
                    }
                ],
            }
        ),
    )


def sns_now(delta: timedelta = timedelta()) -> str:
    """An SNS Timestamp (messages over an hour old are refused as replays)."""
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notification(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": None,
        "Message": json.dumps(message),
        "Timestamp": sns_now(),
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }


SEED_MESSAGE = {
    "callId": CALL_ID,
    "audioS3Uri": f"s3://recordings-example/calls/{CALL_ID}.wav",
    "timestamp": "2026-11-20T11:59:00Z",
    "metadata": {"queue": "Support"},
}


def post_sns(api_client: Any, message: dict[str, Any], capture: Any) -> Any:
    with capture(execute=True):
        return api_client.post(
            "/api/calls/sns", data=json.dumps(message), content_type="text/plain; charset=UTF-8"
        )


def test_sns_notification_runs_data_automation(
    api_client, aws, signer, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.CALLS_TRANSCRIPTION_BACKEND = "data_automation"
    put_bda_outputs(aws)
    client = boto3.client("bedrock-data-automation-runtime", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "invoke_data_automation_async",
        {"invocationArn": BDA_ARN},
        {
            "inputConfiguration": {"s3Uri": SEED_MESSAGE["audioS3Uri"]},
            "outputConfiguration": {"s3Uri": f"s3://bda-output/{CALL_ID}/"},
            "dataAutomationConfiguration": {
                "dataAutomationProjectArn": settings.CALLS_BDA_PROJECT_ARN,
                "stage": "LIVE",
            },
            "dataAutomationProfileArn": settings.CALLS_BDA_PROFILE_ARN,
            "clientToken": stub_token(),
        },
    )
    stub.add_response(
        "get_data_automation_status",
        {
            "status": "Success",
            "outputConfiguration": {"s3Uri": f"s3://bda-output/{CALL_ID}/job_metadata.json"},
        },
        {"invocationArn": BDA_ARN},
    )
    monkeypatch.setitem(
        transcription.BACKENDS,
        "data_automation",
        lambda: transcription.DataAutomationBackend(client=client),
    )
    with stub:
        response = post_sns(
            api_client, signer(notification(SEED_MESSAGE)), django_capture_on_commit_callbacks
        )
        stub.assert_no_pending_responses()
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    call = Call.objects.get()
    assert (call.contact_id, call.transcription_job, call.attributes) == (
        CALL_ID,
        BDA_ARN,
        {"queue": "Support"},
    )
    analytics = CallAnalytics.objects.get()
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    assert analytics.call_categories == ["Tech support"]
    assert analytics.topics == ["router", "internet connection", "factory reset"]
    assert analytics.call_summary.startswith("Customer's router dropped")
    assert analytics.audio_summary.startswith("A customer reports")
    assert analytics.topic_summary.count("\n") == 1
    assert [s["speaker"] for s in Transcript.objects.get().segments] == [
        "Agent",
        "Customer",
        "Agent",
        "Customer",
    ]


def stub_token(audio: str = str(SEED_MESSAGE["audioS3Uri"])) -> str:
    """One client token per recording of the call (``calls.transcription.job_token``)."""
    from calls.models import contact_hash

    return f"call-{contact_hash(CALL_ID)}-{hashlib.sha256(audio.encode()).hexdigest()[:8]}"


def test_sns_subscription_confirmation(api_client, aws, signer, django_capture_on_commit_callbacks):
    subscribe_url = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    )
    message = signer(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "abc",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe...",
            "SubscribeURL": subscribe_url,
            "Timestamp": sns_now(),
        },
        version="1",
    )
    response = post_sns(api_client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert signer.http.urls == [CERT_URL, subscribe_url]
    assert CallEvent.objects.get().status == EventStatus.PROCESSED


def test_sns_subscription_confirmation_retried_after_a_failure(
    api_client, aws, signer, django_capture_on_commit_callbacks, monkeypatch
):
    """A confirmation answered 502 (its SubscribeURL failed) is tried again when SNS
    retries the same message, instead of being answered 200 with nothing confirmed."""
    subscribe_url = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=def"
    )
    message = signer(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "5f1c1a52-6a1e-4a51-9d5f-3e1c3c0b9f10",
            "Token": "def",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe...",
            "SubscribeURL": subscribe_url,
            "Timestamp": sns_now(),
        }
    )
    fake = signer.http
    real_get = fake.get

    def down(url: str) -> bytes:
        if url == subscribe_url:
            fake.urls.append(url)
            # as requests words it: the URL, its confirmation Token included
            raise requests.ConnectionError(f"connection reset for url: {url}")
        return real_get(url)

    monkeypatch.setattr(fake, "get", down)
    response = post_sns(api_client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 502
    failed = CallEvent.objects.get()
    assert failed.status == EventStatus.FAILED
    assert "Token=def" not in failed.error  # the stored error keeps no confirmation token
    assert failed.error.endswith("for url: https://sns.us-east-1.amazonaws.com/?<query>")

    monkeypatch.setattr(fake, "get", real_get)
    response = post_sns(api_client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert fake.urls.count(subscribe_url) == 2  # confirmed on the retry
    event = CallEvent.objects.get()
    assert (event.status, event.error) == (EventStatus.PROCESSED, "")

    # A third delivery of a confirmed message confirms nothing again.
    response = post_sns(api_client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert fake.urls.count(subscribe_url) == 2


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        (timedelta(minutes=-59), True),
        (timedelta(minutes=-61), False),  # a replay of a message seen an hour ago
        (timedelta(days=-30), False),
        (timedelta(minutes=10), False),  # from the future
        (None, False),
    ],
)
def test_sns_messages_older_than_an_hour_are_refused(
    api_client, aws, signer, timestamp, accepted, django_capture_on_commit_callbacks
):
    message = notification({"note": "not a recording"})
    message["Timestamp"] = sns_now(timestamp) if timestamp is not None else "yesterday"
    response = post_sns(api_client, signer(message), django_capture_on_commit_callbacks)
    if accepted:  # past the checks (the content itself is the intake's business)
        assert response.status_code != 403
        assert signer.http.urls == [CERT_URL]
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "bad_signature"
        assert signer.http.urls == []  # refused before fetching any certificate
        assert not CallEvent.objects.exists()


@pytest.mark.parametrize("tamper", ["signature", "cert_host", "topic"])
def test_sns_rejections(api_client, aws, signer, tamper, django_capture_on_commit_callbacks):
    message = signer(notification(SEED_MESSAGE))
    if tamper == "signature":
        message["Message"] = message["Message"].replace("Support", "Billing")
    elif tamper == "cert_host":
        message["SigningCertURL"] = "https://evil.example.com/cert.pem"
    else:
        message = signer(
            {**notification(SEED_MESSAGE), "TopicArn": "arn:aws:sns:us-east-1:123456789012:other"}
        )
    response = post_sns(api_client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 403
    assert not CallEvent.objects.exists()
    assert not Call.objects.exists()
    if tamper == "topic":  # checked first (free): no certificate fetched for a stranger
        assert response.json()["error"]["code"] == "forbidden"
        assert signer.http.urls == []


@responses.activate
def test_an_over_large_certificate_answer_is_refused_not_read_whole():
    """A signing certificate is a few KB: an answer past 64 KiB from the SNS host is refused
    (a failed fetch, so an unverified message), never read whole into memory."""
    responses.get(CERT_URL, body=b"-----BEGIN CERTIFICATE-----" + b"x" * (100 * 1024))
    with pytest.raises(requests.RequestException, match="over 65536 bytes"):
        sns.SnsHttp().get(CERT_URL)
    responses.replace(responses.GET, CERT_URL, body=b"pem")
    assert sns.SnsHttp().get(CERT_URL) == b"pem"


def test_sqs_poll_s3_event_and_bad_message(aws, django_capture_on_commit_callbacks):
    Call.objects.create(contact_id=CALL_ID)
    put_bda_outputs(aws)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="persistence")["QueueUrl"]
    s3_event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-20T12:01:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "results",
                    "bucket": {"name": "bda-output", "arn": "arn:aws:s3:::bda-output"},
                    "object": {
                        "key": f"{CALL_ID}/job_metadata.json",
                        "size": 512,
                        "eTag": "0123456789abcdef0123456789abcdef",
                        "sequencer": "0A1B2C3D4E5F678901",
                    },
                },
            }
        ]
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event))
    sqs.send_message(QueueUrl=url, MessageBody="{oops")
    with django_capture_on_commit_callbacks(execute=True):
        done, left = poll_once(sqs, url, wait=0)
    assert (done, left) == (1, 1)
    assert CallAnalytics.objects.get().produced_by == AnalyticsPath.DATA_AUTOMATION
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # the bad one stays


def test_transcribe_backend_with_moto(
    integration_client, aws, settings, django_capture_on_commit_callbacks
):
    from moto.moto_api import state_manager

    state_manager.set_transition(
        model_name="transcribe::transcriptionjob", transition={"progression": "immediate"}
    )
    settings.CALLS_TRANSCRIPTION_BACKEND = "transcribe"
    ctr = load("ctr_billing.json")
    aws.put_object(
        Bucket="bda-output",
        Key=f"transcripts/{ctr['ContactId']}.json",
        Body=json.dumps(load("transcribe_billing.json")),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(ctr), content_type="application/json"
        )
    assert response.status_code == 202
    call = Call.objects.get()
    recording = hashlib.sha256(call.recording_location.encode()).hexdigest()[:8]
    assert call.transcription_job == f"call-{call.hash}-{recording}"
    job = boto3.client("transcribe", region_name="us-east-1").get_transcription_job(
        TranscriptionJobName=call.transcription_job
    )["TranscriptionJob"]
    assert job["Settings"]["ShowSpeakerLabels"] is True
    assert job["Media"]["MediaFileUri"] == call.recording_location
    analytics = CallAnalytics.objects.get()
    assert (analytics.produced_by, analytics.call_categories[0]) == (AnalyticsPath.LOCAL, "Billing")


def test_bedrock_provider_with_stubber(settings):
    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 2
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    stub = Stubber(client)
    answer = {
        "summary": "Refund issued for a duplicate card fee.",
        "categories": ["Billing"],
        "topics": ["refund", "card fee"],
    }
    stub.add_response("converse", analysis_turn(answer, tokens=(420, 48)))
    for _ in range(2):
        stub.add_client_error(
            "converse", service_error_code="ThrottlingException", http_status_code=429
        )
    segments = [
        Segment("Customer", 0, 1, "I was charged twice, this is awful."),
        Segment("Agent", 1, 2, "Refund issued."),
    ]
    provider = bedrock_provider(client, model_id="anthropic.claude-3-5-sonnet-20240620-v1:0")
    with stub:
        result = provider.analyse(text="", segments=segments)
        throttled = provider.analyse(text="", segments=segments)
    stub.assert_no_pending_responses()
    assert (result.summary, result.categories, result.topics) == (
        answer["summary"],
        ["Billing"],
        ["refund", "card fee"],
    )
    assert (result.sentiment, result.provider) == ("NEGATIVE", "bedrock")
    assert result.bedrock_status
    # Throttled twice (ROUTING_BEDROCK_MAX_ATTEMPTS): the local analysis, fallback recorded.
    assert (throttled.provider, throttled.fallback_from) == ("local", "bedrock")
    assert "ModelThrottledException" in throttled.fallback_reason


def test_bedrock_call_analysis_sends_no_personal_data(monkeypatch, settings):
    """The transcript reaches Bedrock without the caller's name, e-mail, phone or address."""
    from calls import services
    from calls.analytics import providers
    from tickets.models import Customer

    settings.CALLS_AI_PROVIDER = "bedrock"
    customer = Customer.objects.create(
        name="Zelda Quimby", email="zelda.q@example.org", phone="+14155550177"
    )
    call = Call.objects.create(contact_id="c-redact-1", customer=customer)
    segments: list[dict[str, Any]] = [
        {"speaker": "Agent", "start": 0.0, "end": 2.0, "text": "Example Bank, John speaking."},
        {
            "speaker": "Customer",
            "start": 2.0,
            "end": 9.0,
            "text": "Hi, this is Zelda Quimby, 12 Baker Street, London NW1 6XE. Mail me at "
            "zelda.q@example.org or ring 415 555 0177, my card 4111 1111 1111 1111.",
        },
        {"speaker": "Agent", "start": 9.0, "end": 11.0, "text": "Thanks Zelda, refund issued."},
    ]
    Transcript.objects.create(
        call=call,
        source="transcribe",
        text=" ".join(str(s["text"]) for s in segments),
        segments=segments,
    )
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    sent: list[str] = []
    client.meta.events.register(
        "before-parameter-build.bedrock-runtime.Converse",
        lambda params, **_kw: sent.append(json.dumps(params)),
    )
    stub = Stubber(client)
    answer = {"summary": "Refund issued.", "categories": ["Billing"], "topics": ["refund"]}
    stub.add_response("converse", analysis_turn(answer))
    monkeypatch.setitem(providers.PROVIDERS, "bedrock", lambda: bedrock_provider(client))
    with stub:
        analytics = services.call_analyse(call_id=call.pk)
    assert analytics is not None
    assert analytics.provider == "bedrock"
    [body] = sent
    assert "refund issued" in body.lower()  # the words the summary needs still go
    assert "[NAME]" in body
    assert "[ADDRESS]" in body
    assert "[PHONE]" in body
    for personal in ("Zelda", "Quimby", "zelda.q@example.org", "555 0177", "Baker", "NW1 6XE"):
        assert personal.lower() not in body.lower()
    assert "4111" not in body


# --- call_analyse: the model is called with no transaction open (issue #14 item 3) ----------


def _billing_call() -> tuple[Call, Any]:
    from tickets.models import Customer

    customer = Customer.objects.create(name="Pat Payer", phone="+14155550100")
    call = Call.objects.create(
        contact_id="c-analyse-1", customer=customer, pipeline_status="transcribed"
    )
    segments = [
        {"speaker": "Customer", "start": 0.0, "end": 4.0, "text": "I was charged twice for May."},
        {"speaker": "Agent", "start": 4.0, "end": 6.0, "text": "Refund issued."},
    ]
    Transcript.objects.create(
        call=call,
        source="transcribe",
        text=" ".join(str(s["text"]) for s in segments),
        segments=segments,
    )
    return call, customer


def _converse_answer(summary: str) -> dict[str, Any]:
    return analysis_turn({"summary": summary, "categories": ["Billing"], "topics": ["refund"]})


class _DuringCall:
    """A Bedrock client (Stubber) behind the summary provider; ``meanwhile`` runs while the
    provider is busy (after the request went out, before ``call_analyse`` writes), and
    whether a transaction of the code's own was open is noted when the provider is called.

    Strands sends the request from a thread of its own, whose database connection does not
    see the test's transaction: both happen in the caller's thread, around the provider."""

    def __init__(self, monkeypatch: Any, meanwhile: Any = None, summary: str = "Refund.") -> None:
        from calls.analytics import providers
        from support.testing.network_guard import open_transaction_description

        self.client = boto3.client("bedrock-runtime", region_name="us-east-1")
        self.stub = Stubber(self.client)
        self.stub.add_response("converse", _converse_answer(summary))
        self.open_transactions: list[str | None] = []
        self.sent: list[str] = []
        self.client.meta.events.register(
            "before-parameter-build.bedrock-runtime.Converse",
            lambda params, **_kw: self.sent.append(json.dumps(params, default=str)),
        )
        outer = self

        class InFlight:
            name = "bedrock"

            def analyse(self, **kwargs: Any) -> Any:
                outer.open_transactions.append(open_transaction_description())
                analysis = bedrock_provider(outer.client).analyse(**kwargs)
                if meanwhile is not None:
                    meanwhile()
                return analysis

        monkeypatch.setitem(providers.PROVIDERS, "bedrock", InFlight)


def test_call_analyse_calls_bedrock_with_no_transaction_open(monkeypatch, settings):
    from calls import services
    from support.models import OutboxEvent

    settings.CALLS_AI_PROVIDER = "bedrock"
    call, _ = _billing_call()
    bedrock = _DuringCall(monkeypatch)
    with bedrock.stub:
        analytics = services.call_analyse(call_id=call.pk)
    assert bedrock.open_transactions == [None]
    assert len(bedrock.sent) == 1
    assert analytics is not None
    assert (analytics.call_summary, analytics.provider) == ("Refund.", "bedrock")
    call.refresh_from_db()
    assert call.pipeline_status == "analysed"
    assert OutboxEvent.objects.filter(event_type="call.analysed").count() == 1


def test_call_analyse_writes_nothing_stale_when_the_caller_is_erased_during_the_call(
    monkeypatch, settings, supervisor
):
    """An erasure that lands while Bedrock answers must not be undone by the answer: the
    summary of the unredacted words is dropped and the step retried on the redacted text."""
    from django.db import transaction

    from calls import services
    from tickets.context.privacy import customer_erase

    settings.CALLS_AI_PROVIDER = "bedrock"
    call, customer = _billing_call()

    def erase() -> None:
        with transaction.atomic():
            customer_erase(customer=customer, actor=supervisor, via="test")

    bedrock = _DuringCall(monkeypatch, meanwhile=erase, summary="Pat was charged twice for May.")
    with bedrock.stub, pytest.raises(RetryableError, match="changed during analysis"):
        services.call_analyse(call_id=call.pk)
    assert not CallAnalytics.objects.filter(call=call).exists()

    # The retry analyses the redacted transcript.
    again = _DuringCall(monkeypatch, summary="A double charge was refunded.")
    with again.stub:
        analytics = services.call_analyse(call_id=call.pk)
    assert analytics is not None
    assert analytics.call_summary == "A double charge was refunded."
    assert "charged twice for May" not in analytics.transcript


def test_call_analyse_keeps_a_result_and_status_stored_during_the_call(monkeypatch, settings):
    """Another run of the chain finished (analytics stored, Salesforce synced) while this
    one waited for Bedrock: theirs stand, the call stays synced, one call.analysed event."""
    from calls import services
    from support.events import event_record
    from support.models import OutboxEvent

    settings.CALLS_AI_PROVIDER = "bedrock"
    call, _ = _billing_call()

    def other_run() -> None:
        CallAnalytics.objects.create(
            call=call, call_summary="Theirs.", produced_by=AnalyticsPath.LOCAL, provider="local"
        )
        event_record("call.analysed", aggregate_type="call", aggregate_id=call.pk, payload={})
        Call.objects.filter(pk=call.pk).update(pipeline_status="synced")

    bedrock = _DuringCall(monkeypatch, meanwhile=other_run, summary="Ours.")
    with bedrock.stub:
        analytics = services.call_analyse(call_id=call.pk)
    assert analytics is not None
    assert analytics.call_summary == "Theirs."
    call.refresh_from_db()
    assert call.pipeline_status == "synced"
    assert OutboxEvent.objects.filter(event_type="call.analysed").count() == 1


# --- seed 003's single results.json, and results that arrive before their call -----------


def _results_created(key: str, etag: str = "0123456789abcdef") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-20T12:01:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": "bda-output", "arn": "arn:aws:s3:::bda-output"},
                    "object": {"key": key, "size": 2048, "eTag": etag},
                },
            }
        ]
    }


def _put_single_results(s3: Any, call_id: str, summary: str = "") -> dict[str, Any]:
    """Seed 003's ``s3://bucket/{callId}/results.json``: the standard output with the
    custom blueprint's output in the same document (``summary``: another call summary)."""
    custom = load("bda_custom_output.json")
    if summary:
        custom["inference_result"]["call_summary"] = summary
    s3.put_object(
        Bucket="bda-output",
        Key=f"{call_id}/results.json",
        Body=json.dumps({**load("bda_standard_output.json"), "custom_output": custom}),
    )
    return dict(custom["inference_result"])


def _poll(events: list[dict[str, Any]], capture: Any) -> tuple[int, int]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="persistence")["QueueUrl"]
    for event in events:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    with capture(execute=True):
        return poll_once(sqs, url, wait=0)


def test_seed_003_single_results_json_becomes_the_call_analytics(
    aws, django_capture_on_commit_callbacks
):
    call = Call.objects.create(contact_id=CALL_ID)
    custom = _put_single_results(aws, CALL_ID)
    assert _poll(
        [_results_created(f"{CALL_ID}/results.json")], django_capture_on_commit_callbacks
    ) == (
        1,
        0,
    )
    call.refresh_from_db()
    assert call.s3_output_uri == f"s3://bda-output/{CALL_ID}/results.json"
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    assert (analytics.call_summary, analytics.call_categories, analytics.topics) == (
        custom["call_summary"],
        custom["call_categories"],
        custom["topics"],
    )
    assert analytics.transcript
    assert CallEvent.objects.get().status == EventStatus.PROCESSED


@pytest.mark.parametrize("custom_first", [True, False], ids=["custom-first", "metadata-first"])
def test_data_automation_output_objects_are_ignored_only_job_metadata_drives_the_call(
    aws, django_capture_on_commit_callbacks, custom_first
):
    """Data Automation writes ``{job}/job_metadata.json`` beside ``{job}/0/standard_output/
    0/result.json`` and ``{job}/0/custom_output/0/result.json``; the EventBridge rule
    forwards every ``.json``. The custom output alone is no result: read as one, it failed
    the call (or replaced the metadata the call was following)."""
    call = Call.objects.create(contact_id=CALL_ID)
    prefix = f"{CALL_ID}/8a7e4c1b"
    put_bda_outputs(aws, prefix=prefix)
    custom = _results_created(f"{prefix}/custom_output/0/result.json")
    standard = _results_created(f"{prefix}/standard_output/0/result.json")
    metadata = _results_created(f"{prefix}/job_metadata.json")
    events = [custom, standard, metadata] if custom_first else [metadata, standard, custom]
    for event in events:  # one poll each: every event is applied before the next arrives
        _poll([event], django_capture_on_commit_callbacks)
    call.refresh_from_db()
    assert call.s3_output_uri == f"s3://bda-output/{prefix}/job_metadata.json"
    assert (call.pipeline_status, call.pipeline_error) == ("analysed", "")
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    assert analytics.call_categories == ["Tech support"]
    statuses = {
        dict(e.payload or {})["Records"][0]["s3"]["object"]["key"]: e.status
        for e in CallEvent.objects.all()
    }
    assert statuses == {
        f"{prefix}/custom_output/0/result.json": EventStatus.IGNORED,
        f"{prefix}/standard_output/0/result.json": EventStatus.IGNORED,
        f"{prefix}/job_metadata.json": EventStatus.PROCESSED,
    }


def test_results_for_an_unknown_call_are_kept_and_matched_when_its_record_arrives(
    aws, integration_client, django_capture_on_commit_callbacks
):
    """The S3 event used to be ignored when no call had the id yet: the results were lost."""
    ctr = load("ctr_billing.json")
    call_id = ctr["ContactId"]
    custom = _put_single_results(aws, call_id)
    _poll([_results_created(f"{call_id}/results.json")], django_capture_on_commit_callbacks)
    event = CallEvent.objects.get()
    assert event.status == EventStatus.PROCESSED
    kept = Call.objects.get(contact_id=call_id)
    assert kept.s3_output_uri == f"s3://bda-output/{call_id}/results.json"
    assert not CallAnalytics.objects.exists()  # nothing analysed before the record

    with django_capture_on_commit_callbacks(execute=True):
        response = integration_client.post(
            "/api/calls/events", data=json.dumps(ctr), content_type="application/json"
        )
    assert response.status_code == 202
    call = Call.objects.get()
    assert call.pk == kept.pk
    assert call.customer_phone  # the record filled in the kept row
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    assert analytics.call_summary == custom["call_summary"]


RESULTS_URI = f"s3://bda-output/{CALL_ID}/results.json"


def test_seed_003_a_new_results_json_for_a_processed_call_replaces_its_record(
    aws, django_capture_on_commit_callbacks
):
    """docs/api.md (seed 003): "a new Data Automation result overwrites the record".
    Data Automation processing a call again writes ``results.json`` at the same key; the
    S3 event names the new version (eTag). It was recorded and the pipeline restarted,
    but the call had a transcript, so the new result was never read."""
    capture = django_capture_on_commit_callbacks
    call = Call.objects.create(contact_id=CALL_ID)
    custom = _put_single_results(aws, CALL_ID)
    _poll([_results_created(f"{CALL_ID}/results.json")], capture)
    first = CallAnalytics.objects.get(call=call)
    assert first.call_summary == custom["call_summary"]

    _put_single_results(aws, CALL_ID, summary="Reprocessed: the router was replaced.")
    new = _results_created(f"{CALL_ID}/results.json", etag="fedcba9876543210")
    _poll([new], capture)
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.call_summary == "Reprocessed: the router was replaced."
    assert (analytics.pk, first.version, analytics.version) == (first.pk, 1, 2)
    assert analytics.produced_by == AnalyticsPath.DATA_AUTOMATION
    transcript = Transcript.objects.get(call=call)
    assert transcript.source_ref == analytics.source_ref == f"{RESULTS_URI}#fedcba9876543210"
    call.refresh_from_db()
    assert (call.s3_output_version, call.pipeline_status) == ("fedcba9876543210", "analysed")

    # The same event again is a duplicate; the same document under another version (S3
    # rewrote it) is read and changes nothing: no new version, the status left alone.
    Call.objects.filter(pk=call.pk).update(pipeline_status="synced")
    _poll([new], capture)
    _poll([_results_created(f"{CALL_ID}/results.json", etag="00000000aaaaaaaa")], capture)
    analytics.refresh_from_db()
    assert (analytics.version, analytics.call_summary) == (
        2,
        "Reprocessed: the router was replaced.",
    )
    assert Transcript.objects.get(call=call).source_ref == f"{RESULTS_URI}#00000000aaaaaaaa"
    assert Call.objects.get(pk=call.pk).pipeline_status == "synced"
    assert list(CallEvent.objects.order_by("pk").values_list("external_id", "status")) == [
        (f"{CALL_ID}/results.json:0123456789abcdef", EventStatus.PROCESSED),
        (f"{CALL_ID}/results.json:fedcba9876543210", EventStatus.PROCESSED),
        (f"{CALL_ID}/results.json:00000000aaaaaaaa", EventStatus.PROCESSED),
    ]


def test_seed_003_a_corrected_recording_of_a_call_is_analysed_again(
    aws, django_capture_on_commit_callbacks
):
    """A second notification for a call with another ``audioS3Uri`` (a corrected or
    re-uploaded recording) was counted a duplicate of the first (the key was the callId
    alone) and never processed. Now it replaces the call's recording, the next result is
    that recording's, and it replaces the analytics; an exact redelivery of either
    message is still a duplicate."""
    from calls import services

    capture = django_capture_on_commit_callbacks

    def notify(message: dict[str, Any]) -> services.IntakeResult:
        with capture(execute=True):
            return services.call_events_intake(body=json.dumps(message).encode())

    assert len(notify(SEED_MESSAGE).accepted) == 1
    custom = _put_single_results(aws, CALL_ID)
    _poll([_results_created(f"{CALL_ID}/results.json")], capture)
    assert CallAnalytics.objects.get().call_summary == custom["call_summary"]

    again = notify(SEED_MESSAGE)
    assert (again.accepted, again.duplicates) == ([], 1)
    corrected = {
        **SEED_MESSAGE,
        "audioS3Uri": f"s3://recordings-example/calls/{CALL_ID}-corrected.wav",
        "timestamp": "2026-11-20T12:30:00Z",
    }
    result = notify(corrected)
    assert (len(result.accepted), result.duplicates) == (1, 0)
    call = Call.objects.get()
    assert call.s3_input_uri == corrected["audioS3Uri"]
    # the first recording's job and result are not this one's (its own job starts)
    assert (call.s3_output_uri, call.s3_output_version, call.transcription_job) == ("", "", "")
    # kept until the new recording's result arrives
    assert CallAnalytics.objects.get().call_summary == custom["call_summary"]
    assert notify(corrected).duplicates == 1

    _put_single_results(aws, CALL_ID, summary="The corrected recording: a billing question.")
    _poll([_results_created(f"{CALL_ID}/results.json", etag="c0ffee")], capture)
    analytics = CallAnalytics.objects.get()
    assert (analytics.version, analytics.call_summary) == (
        2,
        "The corrected recording: a billing question.",
    )
    assert list(
        CallEvent.objects.filter(source="recording").order_by("pk").values_list("status", flat=True)
    ) == [EventStatus.PROCESSED, EventStatus.PROCESSED]


@pytest.mark.parametrize(
    "cert_url", ["https://[sns.us-east-1.amazonaws.com/cert.pem", "https://[::1"]
)
def test_sns_malformed_certificate_url_is_refused_not_a_500(
    aws, signer, cert_url, django_capture_on_commit_callbacks
):
    """Anyone who knows the topic can post a fresh message; a URL urlparse cannot read
    (an unclosed IPv6 bracket) raised ValueError: a 500."""
    from rest_framework.test import APIClient

    message = {**signer(notification(SEED_MESSAGE)), "SigningCertURL": cert_url}
    client = APIClient(raise_request_exception=False)
    response = post_sns(client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "bad_signature",
        "message": "SigningCertURL must be an https URL on an SNS amazonaws.com host.",
        "details": {},
    }
    assert signer.http.urls == []
    assert not CallEvent.objects.exists()


def test_an_sns_body_larger_than_sns_sends_is_refused_before_it_is_read(
    aws, signer, monkeypatch, django_capture_on_commit_callbacks
):
    """Anyone could post up to 25 MiB (Django's cap) to be read and parsed as JSON before
    the topic was even looked at; an SNS message is at most 256 KiB."""
    from rest_framework.test import APIClient

    from calls.api import views

    parsed: list[Any] = []
    monkeypatch.setattr(views, "json_loads", lambda body: parsed.append(body))
    message = {**signer(notification(SEED_MESSAGE)), "Padding": "x" * 2_100_000}
    client = APIClient(raise_request_exception=False)
    response = post_sns(client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"max_bytes": 2_097_152}
    assert parsed == []
    assert not CallEvent.objects.exists()


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/?Action=ListTopics",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
    ],
    ids=["other-region", "api-query", "port", "credentials", "query"],
)
def test_sns_certificate_url_must_be_a_pem_of_the_topics_region(
    aws, signer, cert_url, django_capture_on_commit_callbacks
):
    """Anyone who knows an accepted topic can post a fresh message naming any URL on any
    sns.*.amazonaws.com host; each new one was fetched (cached an hour per URL)."""
    from rest_framework.test import APIClient

    message = {**signer(notification(SEED_MESSAGE)), "SigningCertURL": cert_url}
    client = APIClient(raise_request_exception=False)
    response = post_sns(client, message, django_capture_on_commit_callbacks)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        # credentials: refused first as no SNS URL at all (``check_sns_url``)
        "SigningCertURL must be an https URL on an SNS amazonaws.com host."
        if "@" in cert_url
        else "SigningCertURL must be a .pem file on the SNS host of the topic's region."
    )
    assert signer.http.urls == []
    assert not CallEvent.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://evil\\@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://user:pw@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com/?Action=Confirm Subscription",
        "https://sns.us-east-1.amazonaws.com/\x00",
    ],
)
def test_an_sns_url_other_parsers_read_differently_is_refused(url):
    """``urlparse`` reads ``https://evil\\@sns.…`` as the SNS host; ``requests`` (urllib3)
    as ``evil``: only a URL every parser reads alike is fetched (defence in depth: SNS
    signs the URL)."""
    import urllib3

    from calls.sns import SnsVerificationError, check_sns_url

    if "\\" in url:
        assert urllib3.util.parse_url(url).host == "evil"  # what would have been fetched
    with pytest.raises(SnsVerificationError):
        check_sns_url(url, "SubscribeURL")
    check_sns_url("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&T=a", "x")
