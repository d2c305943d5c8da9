"""What a provider failure says in logs and stored fallback reasons
(``support.fallback.provider_error_summary``): never the model's answer, which a pydantic
``ValidationError`` (and Strands' ``StructuredOutputException`` made from one) repeats as
``input_value=…`` and which may quote the customer."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel, ValidationError
from strands.types.exceptions import StructuredOutputException

from support.fallback import ProviderFailed, provider_error_summary, provider_failure

MARKER = "zq1815.home@example.com wants a refund"


class Decision(BaseModel):
    team: str
    reasoning: str
    confidence: float


def _validation_error() -> ValidationError:
    try:
        Decision.model_validate({"team": "orders", "reasoning": [MARKER], "confidence": MARKER})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def _structured_output_error() -> StructuredOutputException:
    error = _validation_error()
    try:
        raise StructuredOutputException(f"Structured output failed validation: {error}") from error
    except StructuredOutputException as exc:
        return exc


def test_a_validation_error_is_told_by_its_fields_and_error_types_only():
    error = _validation_error()
    assert MARKER in str(error)  # what was logged before
    assert provider_error_summary(error) == (
        "ValidationError (reasoning: string_type; confidence: float_parsing)"
    )


def test_a_structured_output_failure_names_its_cause_not_its_message():
    assert provider_error_summary(_structured_output_error()) == (
        "StructuredOutputException <- "
        "ValidationError (reasoning: string_type; confidence: float_parsing)"
    )


def test_aws_errors_say_their_code_and_status():
    error = ClientError(
        cast(
            Any,
            {
                "Error": {"Code": "ValidationException", "Message": f"Malformed: {MARKER}"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
        ),
        "Converse",
    )
    assert provider_error_summary(error) == "ClientError (ValidationException, HTTP 400)"
    timeout = ReadTimeoutError(endpoint_url="https://bedrock")
    assert provider_error_summary(timeout) == "ReadTimeoutError"


def test_our_own_provider_failures_say_their_message():
    failed = ProviderFailed("bedrock failed 2 time(s): ModelThrottledException")
    assert provider_error_summary(failed) == "bedrock failed 2 time(s): ModelThrottledException"
    assert provider_error_summary(ValueError(MARKER)) == "ValueError"


def test_the_fallback_warning_holds_no_model_output(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        provider_failure(_structured_output_error(), component="routing", provider="bedrock")
    # this module's record (another test's thread may log beside it under xdist)
    [record] = [r for r in caplog.records if r.name == "support.fallback"]
    assert MARKER not in record.getMessage()
    assert "reasoning: string_type" in record.getMessage()
