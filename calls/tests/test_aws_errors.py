"""Every AWS call in the calls app turns a failure into the project's error family through
``support.aws``: throttled and 5xx are retried, auth and other 4xx are not."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber
from django.core.management import CommandError, call_command

from calls import services
from calls.management.commands.calls_poll_sqs import poll_once
from calls.models import AgentStateSpan, Alert, AlertKind, AlertRule, Call
from calls.parsers import Segment
from calls.services import agents
from calls.transcription import DataAutomationBackend, TranscribeBackend, read_json_s3
from support.aws import aws_client
from support.errors import ExternalAuthError, PermanentError, RetryableError, ThrottledError

# (error code, HTTP status, the project error it must become)
FAILURES = [
    ("ThrottlingException", 400, ThrottledError),
    ("InternalFailure", 500, RetryableError),
    ("ServiceUnavailableException", 503, RetryableError),
    ("AccessDeniedException", 403, ExternalAuthError),
    ("ValidationException", 400, PermanentError),
]
IDS = [f"{code}-{status}" for code, status, _ in FAILURES]


@pytest.fixture(autouse=True)
def _aws(monkeypatch, settings):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.AWS_REGION = "us-east-1"
    settings.CALLS_OUTPUT_BUCKET = "bda-output"
    settings.CALLS_ALLOWED_S3_BUCKETS = ["bda-output"]


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = aws_client(service)
    return client, Stubber(client)


def call() -> Call:
    return Call(
        contact_id="c-1",
        hash="0" * 32,
        s3_input_uri="s3://bda-output/in.wav",
        transcription_job="arn:aws:bedrock:us-east-1:123456789012:data-automation-invocation/x",
    )


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_transcribe_failures(code, status, error):
    client, stub = stubbed("transcribe")
    stub.add_client_error("get_transcription_job", code, http_status_code=status)
    stub.add_client_error("start_transcription_job", code, http_status_code=status)
    backend = TranscribeBackend(client=client)
    with stub, pytest.raises(error) as raised:
        backend.fetch(call())
    assert type(raised.value) is error
    with stub, pytest.raises(error):
        backend.start(call())


def test_transcribe_start_conflict_means_already_started():
    client, stub = stubbed("transcribe")
    stub.add_client_error("start_transcription_job", "ConflictException", http_status_code=400)
    with stub:
        name = TranscribeBackend(client=client).start(call())
    recording = hashlib.sha256(b"s3://bda-output/in.wav").hexdigest()[:8]
    assert name == f"call-{'0' * 32}-{recording}"


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_data_automation_failures(code, status, error):
    client, stub = stubbed("bedrock-data-automation-runtime")
    stub.add_client_error("get_data_automation_status", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        DataAutomationBackend(client=client, s3=object()).fetch(call())
    assert type(raised.value) is error


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_s3_result_read_failures(code, status, error):
    client, stub = stubbed("s3")
    stub.add_client_error("get_object", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        read_json_s3("s3://bda-output/c-1/result.json", client)
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"Reading s3://bda-output/c-1/result.json: {code}")


SEGMENTS = [Segment("Customer", 0, 1, "Charged twice."), Segment("Agent", 1, 2, "Refunded.")]


# (error code, HTTP status, converse attempts before the local analysis takes over)
SUMMARY_FAILURES = [
    ("ThrottlingException", 400, 2),
    ("InternalFailure", 500, 2),
    ("ServiceUnavailableException", 503, 2),
    ("AccessDeniedException", 403, 1),
    ("ValidationException", 400, 1),
]


@pytest.mark.parametrize(("code", "status", "attempts"), SUMMARY_FAILURES, ids=IDS)
def test_bedrock_call_analysis_failures(code, status, attempts, settings):
    """Like routing's: throttled and 5xx retried (bounded), auth and 4xx not; then the
    local analysis, with the fallback recorded."""
    from calls.tests.test_aws import bedrock_provider

    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 2
    client, stub = stubbed("bedrock-runtime")
    for _ in range(attempts):
        stub.add_client_error("converse", code, http_status_code=status)
    with stub:
        analysis = bedrock_provider(client).analyse(text="", segments=SEGMENTS)
    stub.assert_no_pending_responses()
    assert (analysis.provider, analysis.fallback_from) == ("local", "bedrock")
    assert analysis.summary or analysis.categories


def test_bedrock_call_analysis_client_allows_a_long_generation(settings):
    from routing.providers.models import strands_model

    settings.AWS_BEDROCK_READ_TIMEOUT = 90.0
    config = strands_model("summary", "bedrock").client.meta.config
    assert config.read_timeout == 90.0
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}  # we retry


def test_bedrock_call_analysis_timeout_is_retried_then_local(settings):
    from calls.tests.test_aws import bedrock_provider

    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 2
    calls: list[str] = []

    class Hanging:
        def converse(self, **kwargs: Any) -> None:
            calls.append(kwargs["modelId"])
            raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")

    analysis = bedrock_provider(Hanging()).analyse(text="", segments=SEGMENTS)
    assert calls == ["m", "m"]
    assert analysis.provider == "local"
    assert "ReadTimeoutError" in analysis.fallback_reason


@pytest.fixture
def alert(db, settings):
    settings.CALLS_ALERT_SNS_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:agent-alerts"
    rule = AlertRule.objects.create(
        name="Long ACW", kind=AlertKind.STATE_LONGER_THAN, state="AfterContactWork"
    )
    span = AgentStateSpan.objects.create(
        agent_arn="arn:agent",
        username="jdoe",
        state="AfterContactWork",
        started_at=datetime.now(UTC),
    )
    return Alert.objects.create(rule=rule, span=span, username="jdoe", message="ACW 9 min")


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_sns_alert_failures(alert, code, status, error):
    """SNS errors escaped raw (botocore's ClientError) to the task, which never retried."""
    client, stub = stubbed("sns")
    stub.add_client_error("publish", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        services.alert_sns_publish(alert_id=alert.pk, client=client)
    assert type(raised.value) is error


def test_sns_alerts_are_deliveries_throttling_waits_and_a_refused_topic_is_a_dead_letter(
    alert, monkeypatch
):
    """The alert task kept its own retry loop outside the delivery engine: no attempt
    record, no dead letter, no re-drive."""
    from support.delivery.models import Attempt, Circuit, Delivery
    from support.delivery.services import delivery_attempt

    delivery = services.alert_sns_delivery_create(alert=alert)
    assert (delivery.target_kind, delivery.idempotency_key) == ("sns_alert", f"alert:{alert.pk}")
    assert services.alert_sns_delivery_create(alert=alert).pk == delivery.pk  # one per alert

    def throttled(*, alert_id: int, topic_arn: str = "") -> str:
        raise ThrottledError("SNS slow down", retry_after=30.0)

    monkeypatch.setattr(agents, "alert_sns_publish", throttled)
    before = datetime.now(UTC)
    delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    assert delivery.next_attempt_at is not None
    assert (delivery.next_attempt_at - before).total_seconds() >= 29  # the Retry-After
    # the topic asked us to wait: the target is paused for that long (visible in the admin)
    assert Circuit.objects.get(target_kind="sns_alert").state == "open"
    Circuit.objects.all().delete()  # the pause is over

    def denied(*, alert_id: int, topic_arn: str = "") -> str:
        raise ExternalAuthError("SNS: AuthorizationError (HTTP 403)")

    monkeypatch.setattr(agents, "alert_sns_publish", denied)
    delivery_attempt(delivery_id=delivery.pk, expected_attempts=1)
    assert list(Attempt.objects.order_by("number").values_list("outcome", flat=True)) == [
        "throttled",
        "permanent",
    ]
    delivery.refresh_from_db()
    assert delivery.status == "dead"  # a refused topic is not retried
    assert Delivery.objects.count() == 1
    assert Circuit.objects.filter(target_kind="sns_alert", state="open").count() == 0


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_sqs_poll_failures(code, status, error):
    client, stub = stubbed("sqs")
    stub.add_client_error("receive_message", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        poll_once(client, "https://sqs.us-east-1.amazonaws.com/123456789012/calls", wait=0)
    assert type(raised.value) is error


@pytest.mark.django_db
def test_sqs_poll_command_backs_off_then_stops_on_a_permanent_error(monkeypatch):
    """Throttled and 5xx polls back off and poll again; AccessDenied stops the command."""
    client, stub = stubbed("sqs")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/calls"
    stub.add_client_error("receive_message", "ThrottlingException", http_status_code=400)
    stub.add_client_error("receive_message", "InternalError", http_status_code=500)
    stub.add_response("receive_message", {"Messages": []})
    stub.add_client_error("receive_message", "AccessDenied", http_status_code=403)
    sleeps: list[float] = []
    monkeypatch.setattr("support.aws.time.sleep", sleeps.append)
    monkeypatch.setattr(
        "calls.management.commands.calls_poll_sqs.aws_client", lambda *a, **k: client
    )
    with stub, pytest.raises(CommandError, match="SQS receive: AccessDenied"):
        call_command("calls_poll_sqs", url, "--wait", "0", stdout=io.StringIO())
    stub.assert_no_pending_responses()
    assert len(sleeps) == 2


def test_sqs_poll_command_reads_longer_than_the_long_poll(settings, monkeypatch):
    settings.AWS_READ_TIMEOUT = 5.0
    built: dict[str, Any] = {}

    def fake_client(service: str, **kwargs: Any) -> Any:
        built.update(kwargs, service=service)
        raise CommandError("stop here")

    monkeypatch.setattr("calls.management.commands.calls_poll_sqs.aws_client", fake_client)
    with pytest.raises(CommandError, match="stop here"):
        call_command("calls_poll_sqs", "q", "--wait", "20", "--once")
    assert built == {"service": "sqs", "read_timeout": 30}
