"""support.aws: one classification of AWS failures, one way to build clients."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    CapacityNotAvailableError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    UnknownServiceError,
    UnStubbedResponseError,
)

from support import aws
from support.aws import (
    ErrorKind,
    aws_client,
    aws_clients_clear,
    aws_config,
    aws_error,
    aws_error_code,
    classify_aws_error,
    poll_forever,
)
from support.errors import (
    ExternalAuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
    http_status_kind,
)
from support.models import AttemptOutcome
from support.outbound import classify_http_status

T, R, A, P = ErrorKind.THROTTLED, ErrorKind.RETRYABLE, ErrorKind.AUTH, ErrorKind.PERMANENT


def client_error(
    code: str, status: int, *, headers: dict[str, str] | None = None, op: str = "Op"
) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": f"{code} happened"} if code else {},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    if not status:
        del response["ResponseMetadata"]
    return ClientError(response, op)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch, settings):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws_clients_clear()
    yield
    aws_clients_clear()


CLIENT_ERRORS = [
    # throttled: by code, whatever the status, and 429 for codes we do not know
    ("ThrottlingException", 400, T),
    ("Throttling", 400, T),
    ("TooManyRequestsException", 429, T),
    ("SlowDown", 503, T),
    ("RequestLimitExceeded", 503, T),
    ("ProvisionedThroughputExceededException", 400, T),
    ("LimitExceededException", 400, T),
    ("ServiceQuotaExceededException", 400, T),
    ("SomethingNewException", 429, T),
    # retryable: 5xx, service unavailable, internal errors, model not ready, timeouts
    ("ServiceUnavailableException", 503, R),
    ("ServiceUnavailable", 503, R),
    ("InternalServerException", 500, R),
    ("InternalServerError", 500, R),
    ("InternalFailure", 500, R),
    ("ModelNotReadyException", 429, R),
    ("RequestTimeout", 400, R),
    ("SomethingNewException", 502, R),
    ("", 500, R),
    # auth: refused or expired credentials, missing permission
    ("AccessDenied", 403, A),
    ("AccessDeniedException", 403, A),
    ("AccessDeniedForDependencyException", 400, A),
    ("KMSAccessDeniedException", 400, A),
    ("UnrecognizedClientException", 400, A),
    ("InvalidSignatureException", 400, A),
    ("SignatureDoesNotMatch", 403, A),
    ("ExpiredToken", 400, A),
    ("ExpiredTokenException", 403, A),
    ("SomethingNewException", 401, A),
    ("SomethingNewException", 403, A),
    # permanent: every other client error
    ("ValidationException", 400, P),
    ("ResourceNotFoundException", 404, P),
    ("NoSuchKey", 404, P),
    ("ConditionalCheckFailedException", 400, P),
    ("ConflictException", 409, P),
    ("SomethingNewException", 400, P),
    ("SomethingNewException", 0, P),
]


@pytest.mark.parametrize(("code", "status", "kind"), CLIENT_ERRORS)
def test_client_errors_are_classified_by_code_then_status(code, status, kind):
    assert classify_aws_error(client_error(code, status)) is kind


BOTOCORE_ERRORS = [
    (ConnectTimeoutError(endpoint_url="https://sqs.example"), R),
    (ReadTimeoutError(endpoint_url="https://sqs.example"), R),
    (EndpointConnectionError(endpoint_url="https://sqs.example"), R),
    (ConnectionClosedError(endpoint_url="https://sqs.example"), R),
    (IncompleteReadError(actual_bytes=1, expected_bytes=2), R),
    (CredentialRetrievalError(provider="container-role", error_msg="timed out"), R),
    (CapacityNotAvailableError(), T),
    # Missing credentials are a configuration error: auth, never retried.
    (NoCredentialsError(), A),
    (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), A),
    (ParamValidationError(report="Missing required parameter"), P),
    (NoRegionError(), P),
    (UnknownServiceError(service_name="nope", known_service_names="s3"), P),
    (UnStubbedResponseError(operation_name="Op", reason="nothing queued"), P),
    (TimeoutError("socket timed out"), R),
    (ConnectionRefusedError("refused"), R),
    (ValueError("not an AWS error"), P),
]


@pytest.mark.parametrize(
    ("exc", "kind"), BOTOCORE_ERRORS, ids=[type(e).__name__ for e, _ in BOTOCORE_ERRORS]
)
def test_transport_and_client_side_errors_are_classified(exc, kind):
    assert classify_aws_error(exc) is kind


def test_aws_error_maps_each_kind_to_the_project_error_family():
    throttled = aws_error(
        client_error("ThrottlingException", 400, headers={"retry-after": "7"}), context="Titan"
    )
    assert type(throttled) is ThrottledError
    assert isinstance(throttled, RetryableError)
    assert throttled.retry_after == 7.0
    assert str(throttled) == "Titan: ThrottlingException (HTTP 400): ThrottlingException happened"

    unavailable = aws_error(client_error("InternalServerException", 500), context="Bedrock")
    assert type(unavailable) is RetryableError
    assert unavailable.retry_after is None

    timeout = aws_error(ReadTimeoutError(endpoint_url="https://s3.example"), context="S3")
    assert type(timeout) is RetryableError
    assert str(timeout).startswith("S3: ReadTimeoutError: Read timeout")

    denied = aws_error(client_error("AccessDeniedException", 403), context="Comprehend")
    assert type(denied) is ExternalAuthError
    assert isinstance(denied, PermanentError)
    assert type(aws_error(NoCredentialsError(), context="SNS")) is ExternalAuthError

    invalid = aws_error(client_error("ValidationException", 400), context="Bedrock")
    assert type(invalid) is PermanentError
    assert str(invalid) == "Bedrock: ValidationException (HTTP 400): ValidationException happened"


def test_aws_error_code_reads_the_code_for_callers_expecting_one():
    assert aws_error_code(client_error("ConflictException", 409)) == "ConflictException"
    assert aws_error_code(ReadTimeoutError(endpoint_url="https://x")) == ""


@pytest.mark.parametrize(
    ("status", "kind", "outcome"),
    [
        (200, None, AttemptOutcome.SUCCESS),
        (204, None, AttemptOutcome.SUCCESS),
        (301, P, AttemptOutcome.PERMANENT),
        (400, P, AttemptOutcome.PERMANENT),
        (401, A, AttemptOutcome.PERMANENT),
        (403, A, AttemptOutcome.PERMANENT),
        (404, P, AttemptOutcome.PERMANENT),
        (408, R, AttemptOutcome.RETRYABLE),
        (425, R, AttemptOutcome.RETRYABLE),
        (429, T, AttemptOutcome.RETRYABLE),
        (500, R, AttemptOutcome.RETRYABLE),
        (503, R, AttemptOutcome.RETRYABLE),
    ],
)
def test_http_statuses_share_the_table_and_channel_outcomes_are_unchanged(status, kind, outcome):
    assert http_status_kind(status) is kind
    assert classify_http_status(status) is outcome


# --- Clients ----------------------------------------------------------------------------


def test_aws_client_applies_the_default_timeouts_retries_and_region(settings):
    settings.AWS_REGION = "eu-west-1"
    settings.AWS_CONNECT_TIMEOUT = 3.0
    settings.AWS_READ_TIMEOUT = 12.0
    settings.AWS_MAX_ATTEMPTS = 4
    client = aws_client("sqs")
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (3.0, 12.0)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}
    assert client.meta.region_name == "eu-west-1"


def test_aws_client_overrides_per_call_site(settings):
    settings.AWS_REGION = "eu-west-1"
    client = aws_client(
        "dynamodb",
        region="us-west-2",
        connect_timeout=2,
        read_timeout=60,
        max_attempts=1,
        endpoint_url="http://localhost:8000",
    )
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 60)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert client.meta.region_name == "us-west-2"
    assert client.meta.endpoint_url == "http://localhost:8000"


def test_aws_config_refuses_unbounded_or_nonsense_values():
    with pytest.raises(ValueError, match="at least 1"):
        aws_config(max_attempts=0)
    with pytest.raises(ValueError, match="positive"):
        aws_config(read_timeout=0)
    with pytest.raises(ValueError, match="retry mode"):
        aws_config(retry_mode="legacy")


def test_clients_are_cached_per_service_and_config_and_per_process(monkeypatch, settings):
    first = aws_client("s3")
    assert aws_client("s3") is first
    assert aws_client("s3", read_timeout=99) is not first
    assert aws_client("sqs") is not first
    settings.AWS_READ_TIMEOUT = 7.0  # a changed setting is a different config
    assert aws_client("s3") is not first
    settings.AWS_READ_TIMEOUT = 30.0
    again = aws_client("s3")
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked worker builds its own
    assert aws_client("s3", read_timeout=30.0) is not again
    monkeypatch.undo()
    aws_clients_clear()
    assert aws_client("s3") is not again


def test_a_client_built_without_credentials_is_not_cached(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws_clients_clear()
    assert aws_client("sns") is not aws_client("sns")


def test_s3_file_storage_uses_the_same_client_config(settings):
    from support.storage import S3Storage

    settings.AWS_CONNECT_TIMEOUT = 4.0
    settings.AWS_READ_TIMEOUT = 25.0
    storage = S3Storage(bucket_name="files")
    config = storage.client_config
    assert (config.connect_timeout, config.read_timeout) == (4.0, 25.0)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert config.s3 == {"addressing_style": None}


# --- Pollers ----------------------------------------------------------------------------


def test_poll_forever_backs_off_on_retryable_errors_and_stops_on_permanent_ones():
    outcomes: list[Exception | None] = [
        ThrottledError("slow down", retry_after=7.0),
        RetryableError("503"),
        None,
        RetryableError("503 again"),
        ExternalAuthError("AccessDenied"),
    ]
    sleeps: list[float] = []

    def poll() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    with pytest.raises(ExternalAuthError):
        poll_forever(poll, sleep=sleeps.append)
    assert outcomes == []
    assert len(sleeps) == 3
    assert sleeps[0] >= 7.0  # Retry-After honoured
    assert 1.6 <= sleeps[1] <= 2.4  # second failure in a row: 2 s with jitter
    assert 0.8 <= sleeps[2] <= 1.2  # a success reset the count


def test_poll_forever_once_raises_a_retryable_error_and_returns_after_success():
    sleeps: list[float] = []

    def failing() -> None:
        raise RetryableError("503")

    with pytest.raises(RetryableError):
        poll_forever(failing, once=True, sleep=sleeps.append)
    calls: list[int] = []
    poll_forever(lambda: calls.append(1), once=True, sleep=sleeps.append)
    assert (calls, sleeps) == ([1], [])


_POLLER = """
import os, sys, time
import django
django.setup()
from support.aws import poll_forever

def poll():
    print("polling", flush=True)
    time.sleep(1.0)  # a message in hand when the signal comes
    print("handled", flush=True)

poll_forever(poll)
print("stopped", flush=True)
"""


def _pid_one_child(parent: int) -> int:
    """The process ``unshare --fork`` started (PID 1 of its namespace)."""
    for _ in range(100):
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        if children:
            return int(children[0])
        import time

        time.sleep(0.05)
    raise AssertionError("unshare started no process")


def test_a_poller_stops_on_sigterm_after_the_poll_under_way_even_as_pid_one():
    """ECS stops a reader with SIGTERM, then SIGKILL after its StopTimeout. As a container's
    PID 1 (the entrypoint execs it) a process gets no signal it has no handler for: before
    2026-12-07 the SQS readers ignored SIGTERM and were killed mid-batch 120 s later. Now
    the loop stops once the poll under way has handled its messages."""
    import select
    import shutil
    import signal
    import subprocess
    import sys

    as_pid_one = shutil.which("unshare") is not None and os.geteuid() == 0
    prefix = ["unshare", "--pid", "--fork"] if as_pid_one else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", _POLLER],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        target = _pid_one_child(proc.pid) if as_pid_one else proc.pid
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the poller said nothing"
        assert proc.stdout.readline() == "polling\n"
        os.kill(target, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.splitlines() == ["handled", "stopped"], err
    assert proc.returncode == 0


# --- The copies cannot come back ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = ROOT / "support" / "aws.py"
# django-storages builds its own client; support/storage.py hands it aws_config() merged
# with its S3 options, which needs botocore's Config class.
CONFIG_IMPORT_ALLOWED = {CLASSIFIER, ROOT / "support" / "storage.py"}
CODE_TABLES = aws.THROTTLED_CODES | aws.RETRYABLE_CODES | aws.AUTH_CODES
CLIENT_BUILDERS = {("boto3", "client"), ("boto3", "resource"), ("boto3", "Session")}


def _product_modules() -> list[Path]:
    skip = {".venv", ".devdata", "node_modules", "staticfiles", "migrations", "tests", "bench"}
    return [
        path
        for path in ROOT.rglob("*.py")
        if not skip.intersection(path.relative_to(ROOT).parts)
        and path.name != "conftest.py"
        and not path.name.startswith("test_")
    ]


def _findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        # exc.response["Error"] / exc.response.get("ResponseMetadata") ...
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            key = node.slice
            if (
                node.value.attr == "response"
                and isinstance(key, ast.Constant)
                and key.value in ("Error", "ResponseMetadata")
            ):
                found.append(f"{where} reads exc.response[{key.value!r}]")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (
                func.attr == "get"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "response"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in ("Error", "ResponseMetadata")
            ):
                found.append(f"{where} reads exc.response.get({node.args[0].value!r})")
            if isinstance(func.value, ast.Name) and (func.value.id, func.attr) in CLIENT_BUILDERS:
                found.append(f"{where} builds a client with {func.value.id}.{func.attr}()")
            if (
                func.attr == "Session"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "session"
            ):
                found.append(f"{where} builds a boto3 session")
        if isinstance(node, ast.Constant) and (
            node.value == "HTTPStatusCode" or node.value in CODE_TABLES
        ):
            found.append(f"{where} has an AWS error table entry {node.value!r}")
        if isinstance(node, ast.ImportFrom | ast.Import) and path not in CONFIG_IMPORT_ALLOWED:
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            if "botocore.config" in names:
                found.append(f"{where} imports botocore.config (use support.aws.aws_config)")
    return found


def test_aws_errors_are_classified_and_clients_built_only_in_support_aws():
    """Callers may ``except ClientError`` to catch; reading ``Error.Code`` or
    ``HTTPStatusCode``, keeping a table of error codes, or building a client happens only
    in support/aws.py."""
    modules = _product_modules()
    assert len(modules) > 50  # the scan really covers the project
    findings = [f for path in modules if path != CLASSIFIER for f in _findings(path)]
    assert findings == []


def test_the_scan_finds_a_copy(tmp_path):
    copy = tmp_path / "copy.py"
    source = (
        "import boto3\n"
        "def f(exc):\n"
        "    code = exc.response.get('Error', {}).get('Code')\n"
        "    status = exc.response['ResponseMetadata']['HTTPStatusCode']\n"
        "    if code in {'ThrottlingException'}:\n"
        "        return boto3.client('s3')\n"
    )
    copy.write_text(source + "from botocore.config import Config\n")
    assert sorted(_findings(copy)) == [
        "copy.py:3 reads exc.response.get('Error')",
        "copy.py:4 has an AWS error table entry 'HTTPStatusCode'",
        "copy.py:4 reads exc.response['ResponseMetadata']",
        "copy.py:5 has an AWS error table entry 'ThrottlingException'",
        "copy.py:6 builds a client with boto3.client()",
        "copy.py:7 imports botocore.config (use support.aws.aws_config)",
    ]
