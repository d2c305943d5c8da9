"""Transcription backends behind one interface: local storage, Amazon Transcribe,
Bedrock Data Automation. Every result, wherever it comes from, goes through
``calls.parsers.parse_result`` (or ``parse_bda`` with the custom output).

``fetch`` answers a parsed result, or ``None`` while the job is still running; ``start``
starts a job and answers its handle (job name or invocation ARN).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import default_storage

from calls.models import Call
from calls.parsers import ParsedResult, RecordError, parse_bda, parse_result, split_s3_uri
from calls.s3access import S3LocationRefused, s3_uri_check
from support.aws import aws_client, aws_error, aws_error_code
from support.errors import PermanentError
from support.parsing import json_loads, without_nul

LOCAL_RESULTS_DIR = "calls/results"


def job_token(call: Call) -> str:
    """The call's job name (Transcribe) or client token (Data Automation): one per
    recording, so a corrected recording of the call (seed 003: a new ``audioS3Uri``) starts
    a job of its own instead of finding the first one's, and starting again the job of the
    same recording (a retried step) finds the one started."""
    recording = call.s3_input_uri or call.recording_location
    return f"call-{call.hash}-{hashlib.sha256(recording.encode()).hexdigest()[:8]}"


#: How ``Call.pipeline_error`` starts when Bedrock Data Automation failed the call: the
#: invocation or its status was refused for good, or the job ended in ``ServiceError`` or
#: ``ClientError``. ``calls.metrics`` counts these calls in ``support_call_bedrock_failures``
#: (seed 003's "Bedrock invocation failures").
BDA_FAILURE = "Data Automation failed"


class TranscriptionBackend(Protocol):
    name: str

    def start(self, call: Call) -> str: ...

    def fetch(self, call: Call) -> ParsedResult | None: ...


def allowed_s3_uri(uri: str) -> str:
    """``uri`` if it is inside ``CALLS_ALLOWED_S3_BUCKETS``; else a permanent failure (an
    event recorded before the allow-list, or a result file pointing elsewhere)."""
    try:
        s3_uri_check(uri)
    except S3LocationRefused as exc:
        raise PermanentError(exc.message) from exc
    return uri


def read_json_s3(uri: str, client: Any = None) -> dict[str, Any]:
    bucket, key = split_s3_uri(allowed_s3_uri(uri))
    try:
        body = (client or aws_client("s3")).get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context=f"Reading {uri}") from exc
    try:
        # Written by AWS, but read like any JSON from outside (depth, NaN); NUL kept as
        # U+FFFD, as for received events (PostgreSQL text cannot hold it).
        data = without_nul(json_loads(body, what="The object"))
    except ValueError as exc:
        raise PermanentError(f"{uri}: {exc}") from exc
    if not isinstance(data, dict):
        raise PermanentError(f"{uri} is not a JSON object.")
    return data


def result_from_s3_object(uri: str, client: Any = None) -> ParsedResult:
    """A ``result.json`` (Transcribe or BDA) or a BDA ``job_metadata.json`` to follow."""
    doc = read_json_s3(uri, client)
    try:
        if "output_metadata" in doc:
            segment = doc["output_metadata"][0]["segment_metadata"][0]
            standard = read_json_s3(segment["standard_output_path"], client)
            custom_path = segment.get("custom_output_path")
            custom = read_json_s3(custom_path, client) if custom_path else None
            return parse_bda(standard, custom)
        return parse_result(doc)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise PermanentError(f"{uri}: unexpected Data Automation metadata ({exc}).") from exc
    except RecordError as exc:
        raise PermanentError(f"{uri}: {exc}") from exc


def local_result_names(contact_id: str) -> list[str]:
    """Where the local backend looks, first found wins: a Transcribe result, a Data
    Automation standard output, seed 003's ``results.json`` (its name for the call's one
    output: nested, or its outputs by name)."""
    base = f"{LOCAL_RESULTS_DIR}/{contact_id}"
    return [f"{base}/transcribe.json", f"{base}/result.json", f"{base}/results.json"]


def result_from_storage(contact_id: str) -> ParsedResult | None:
    for name in local_result_names(contact_id):
        if default_storage.exists(name):
            with default_storage.open(name, "rb") as handle:
                try:
                    doc = without_nul(json_loads(handle.read(), what="The result"))
                    if not isinstance(doc, dict):
                        raise RecordError("The result is not a JSON object.")
                    return parse_result(doc)
                except (ValueError, RecordError) as exc:
                    raise PermanentError(f"{name}: {exc}") from exc
    return None


class LocalBackend:
    """A Transcribe- or Data-Automation-format result placed in storage (demo, offline)."""

    name = "local"

    def start(self, call: Call) -> str:
        return ""

    def fetch(self, call: Call) -> ParsedResult | None:
        return result_from_storage(call.contact_id)


class TranscribeBackend:
    name = "transcribe"

    def __init__(self, client: Any = None, s3: Any = None) -> None:
        self.client = client or aws_client("transcribe")
        self.s3 = s3

    def job_name(self, call: Call) -> str:
        return job_token(call)

    def output_key(self, call: Call) -> str:
        return f"transcripts/{call.contact_id}.json"

    def start(self, call: Call) -> str:
        media = allowed_s3_uri(call.s3_input_uri or call.recording_location)
        name = self.job_name(call)
        try:
            self.client.start_transcription_job(
                TranscriptionJobName=name,
                LanguageCode=settings.CALLS_TRANSCRIBE_LANGUAGE,
                Media={"MediaFileUri": media},
                OutputBucketName=settings.CALLS_OUTPUT_BUCKET,
                OutputKey=self.output_key(call),
                Settings={"ShowSpeakerLabels": True, "MaxSpeakerLabels": 2},
            )
        except (ClientError, BotoCoreError) as exc:
            if aws_error_code(exc) == "ConflictException":
                return name  # already started: resumable
            raise aws_error(exc, context="Transcribe start") from exc
        return name

    def fetch(self, call: Call) -> ParsedResult | None:
        try:
            job = self.client.get_transcription_job(
                # the job started for the call (by a release that named jobs otherwise)
                TranscriptionJobName=call.transcription_job or self.job_name(call)
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, context="Transcribe status") from exc
        info = job["TranscriptionJob"]
        status = info["TranscriptionJobStatus"]
        if status == "FAILED":
            raise PermanentError(f"Transcribe failed: {info.get('FailureReason', '')}")
        if status != "COMPLETED":
            return None
        uri = f"s3://{settings.CALLS_OUTPUT_BUCKET}/{self.output_key(call)}"
        return result_from_s3_object(uri, self.s3)


class DataAutomationBackend:
    """``invoke_data_automation_async`` → ``result.json`` in S3 (seed 003)."""

    name = "data_automation"

    def __init__(self, client: Any = None, s3: Any = None) -> None:
        self.client = client or aws_client("bedrock-data-automation-runtime")
        self.s3 = s3

    def start(self, call: Call) -> str:
        try:
            response = self.client.invoke_data_automation_async(
                inputConfiguration={
                    "s3Uri": allowed_s3_uri(call.s3_input_uri or call.recording_location)
                },
                outputConfiguration={
                    "s3Uri": f"s3://{settings.CALLS_OUTPUT_BUCKET}/{call.contact_id}/"
                },
                dataAutomationConfiguration={
                    "dataAutomationProjectArn": settings.CALLS_BDA_PROJECT_ARN,
                    "stage": "LIVE",
                },
                dataAutomationProfileArn=settings.CALLS_BDA_PROFILE_ARN,
                clientToken=job_token(call),
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, context=f"{BDA_FAILURE} (invoke)") from exc
        return str(response["invocationArn"])

    def fetch(self, call: Call) -> ParsedResult | None:
        try:
            status = self.client.get_data_automation_status(invocationArn=call.transcription_job)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, context=f"{BDA_FAILURE} (status)") from exc
        state = status["status"]
        if state in ("ServiceError", "ClientError"):
            raise PermanentError(
                f"{BDA_FAILURE} ({state}): {status.get('errorType', '')} "
                f"{status.get('errorMessage', '')}".strip()
            )
        if state != "Success":
            return None
        return result_from_s3_object(status["outputConfiguration"]["s3Uri"], self.s3)


BACKENDS: dict[str, Callable[[], TranscriptionBackend]] = {
    "local": LocalBackend,
    "transcribe": TranscribeBackend,
    "data_automation": DataAutomationBackend,
}


def get_backend(name: str | None = None) -> TranscriptionBackend:
    key = name or settings.CALLS_TRANSCRIPTION_BACKEND
    try:
        return BACKENDS[key]()
    except KeyError:
        raise PermanentError(f"Unknown transcription backend {key!r}.") from None
