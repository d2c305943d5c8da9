"""Comprehend and DynamoDB failures become the project's error family through
``support.aws``: throttled and 5xx are retried, auth and other 4xx are not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from support.aws import aws_client
from support.errors import ExternalAuthError, PermanentError, RetryableError, ThrottledError
from tickets.context.interactions import DynamoInteractionBackend, InteractionRecord
from tickets.context.sentiment import ComprehendAnalyser

FAILURES = [
    ("ThrottlingException", 400, ThrottledError),
    ("ProvisionedThroughputExceededException", 400, ThrottledError),
    ("InternalServerError", 500, RetryableError),
    ("ServiceUnavailable", 503, RetryableError),
    ("UnrecognizedClientException", 400, ExternalAuthError),
    ("ValidationException", 400, PermanentError),
]
IDS = [f"{code}-{status}" for code, status, _ in FAILURES]


@pytest.fixture(autouse=True)
def _aws(monkeypatch, settings):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.AWS_REGION = "us-east-1"


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = aws_client(service)
    return client, Stubber(client)


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_comprehend_failures(code, status, error):
    client, stub = stubbed("comprehend")
    stub.add_client_error("detect_sentiment", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        ComprehendAnalyser(client=client).analyse("The parcel never came.")
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"Comprehend: {code} (HTTP {status})")


def test_comprehend_invalid_parameters_are_not_retried():
    """A client-side parameter error (a BotoCoreError) used to be retried."""

    class Client:
        def detect_sentiment(self, **kwargs: Any) -> None:
            raise ParamValidationError(report="Invalid length for parameter Text")

    with pytest.raises(PermanentError) as raised:
        ComprehendAnalyser(client=Client()).analyse("hello")
    assert type(raised.value) is PermanentError


def test_context_clients_use_the_short_context_timeout(settings):
    settings.CONTEXT_AWS_TIMEOUT = 2.5
    settings.INTERACTIONS_DYNAMODB_ENDPOINT_URL = "http://localhost:8000"
    comprehend = ComprehendAnalyser().client.meta.config
    assert (comprehend.connect_timeout, comprehend.read_timeout) == (2.5, 2.5)
    dynamodb = DynamoInteractionBackend(table="t").client
    assert (dynamodb.meta.config.connect_timeout, dynamodb.meta.config.read_timeout) == (2.5, 2.5)
    assert dynamodb.meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert dynamodb.meta.endpoint_url == "http://localhost:8000"


@pytest.mark.parametrize(("code", "status", "error"), FAILURES, ids=IDS)
def test_dynamodb_failures(code, status, error):
    client, stub = stubbed("dynamodb")
    stub.add_client_error("query", code, http_status_code=status)
    with stub, pytest.raises(error) as raised:
        DynamoInteractionBackend(client=client, table="t").recent(42, limit=5)
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"DynamoDB query: {code}")


def test_dynamodb_conditional_write_that_lost_means_recorded_before():
    client, stub = stubbed("dynamodb")
    stub.add_client_error("put_item", "ConditionalCheckFailedException", http_status_code=400)
    stub.add_client_error("put_item", "ThrottlingException", http_status_code=400)
    record = InteractionRecord(
        customer_id=42,
        source_key="message:1",
        channel="email",
        kind="message",
        occurred_at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    backend = DynamoInteractionBackend(client=client, table="t")
    with stub:
        assert backend.record(record) is False
        with pytest.raises(ThrottledError):
            backend.record(record)
