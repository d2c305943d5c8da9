"""Every AWS call in the knowledge app turns a failure into the project's error family
through ``support.aws``: throttled and 5xx are retried, auth and other 4xx are not."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.stub import Stubber
from django.core.management import CommandError, call_command

from knowledge.backends.bedrock import BedrockBackend
from knowledge.embeddings import TitanEmbedder
from knowledge.management.commands.kb_sqs_poll import poll_once, sqs_client
from knowledge.models import KnowledgeSource
from knowledge.readers import ItemError, s3_client, s3_keys, s3_read_object
from support.aws import aws_client
from support.errors import ExternalAuthError, PermanentError, RetryableError, ThrottledError

FAILURES = [
    ("ThrottlingException", 400, ThrottledError),
    ("InternalServerException", 500, RetryableError),
    ("ServiceUnavailableException", 503, RetryableError),
    ("AccessDeniedException", 403, ExternalAuthError),
    ("ValidationException", 400, PermanentError),
]
IDS = [f"{code}-{status}" for code, status, _ in FAILURES]
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/kb-events"


@pytest.fixture(autouse=True)
def _aws(aws_env: None, settings: Any) -> None:
    settings.KB_BEDROCK_KNOWLEDGE_BASE_ID = "KB12345678"
    settings.KB_BEDROCK_DATA_SOURCE_ID = "DS12345678"


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = aws_client(service, region="us-east-1")
    return client, Stubber(client)


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_titan_embedding_failures(code, status, error):
    """Titan treated every 5xx but ServiceUnavailable (InternalServerException) as permanent."""
    client, stub = stubbed("bedrock-runtime")
    stub.add_client_error("invoke_model", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        TitanEmbedder(client=client).encode(["Where is my parcel?"])
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"Titan embeddings: {code} (HTTP {status})")


def test_titan_client_uses_the_kb_region_and_the_defaults(settings):
    settings.KB_AWS_REGION = "eu-central-1"
    settings.AWS_READ_TIMEOUT = 11.0
    client = TitanEmbedder()._client
    assert client.meta.region_name == "eu-central-1"
    assert client.meta.config.read_timeout == 11.0
    settings.KB_AWS_REGION = ""
    assert s3_client().meta.region_name == settings.AWS_REGION  # unset: AWS_REGION


SOURCE = KnowledgeSource(name="docs", kind=KnowledgeSource.Kind.S3, bucket="kb-docs", prefix="h/")


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_s3_reader_failures(code, status, error):
    """S3 read a ThrottlingException (400) as permanent."""
    client, stub = stubbed("s3")
    stub.add_client_error("list_objects_v2", code, http_status_code=status)
    stub.add_client_error("get_object", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        list(s3_keys(SOURCE, client))
    assert type(raised.value) is error
    if error is PermanentError:  # this one object cannot be read (archived...): one item
        with stub:
            [item] = s3_read_object(SOURCE, "h/a.md", client)
        assert item == ItemError("h/a.md", f"h/a.md: S3: {code} (HTTP {status})")
        return
    with stub, pytest.raises(error):  # the sync stops (and is retried, or waits for access)
        s3_read_object(SOURCE, "h/a.md", client)


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_bedrock_knowledge_base_failures(code, status, error, db):
    from knowledge.services import job_create

    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_client_error("retrieve", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        BedrockBackend(runtime_client=runtime).search("refund", k=3)
    assert type(raised.value) is error
    agent, agent_stub = stubbed("bedrock-agent")
    agent_stub.add_client_error("start_ingestion_job", code, http_status_code=status)
    with agent_stub, pytest.raises(error):
        BedrockBackend(agent_client=agent).sync(job_create(backend="bedrock"))


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_kb_sqs_poll_failures(code, status, error):
    client, stub = stubbed("sqs")
    stub.add_client_error("receive_message", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        poll_once(client, QUEUE, wait_seconds=0)
    assert type(raised.value) is error


@pytest.mark.django_db
def test_kb_sqs_poll_command_backs_off_then_stops_on_a_permanent_error(monkeypatch):
    client, stub = stubbed("sqs")
    stub.add_client_error("receive_message", "OverLimit", http_status_code=429)
    stub.add_response("receive_message", {"Messages": []})
    stub.add_client_error("receive_message", "QueueDoesNotExist", http_status_code=400)
    sleeps: list[float] = []
    monkeypatch.setattr("support.aws.time.sleep", sleeps.append)
    monkeypatch.setattr(
        "knowledge.management.commands.kb_sqs_poll.sqs_client", lambda **kwargs: client
    )
    with stub, pytest.raises(CommandError, match="SQS receive: QueueDoesNotExist"):
        call_command("kb_sqs_poll", "--queue-url", QUEUE, "--wait", "0", stdout=io.StringIO())
    stub.assert_no_pending_responses()
    assert len(sleeps) == 1


def test_kb_sqs_client_reads_longer_than_the_long_poll(settings):
    settings.AWS_READ_TIMEOUT = 5.0
    assert sqs_client(wait_seconds=20).meta.config.read_timeout == 30
    settings.AWS_READ_TIMEOUT = 45.0
    assert sqs_client(wait_seconds=20).meta.config.read_timeout == 45.0
