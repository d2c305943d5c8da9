"""Every AWS call goes through here: one way to build clients, one way to read failures.

**Clients.** ``aws_client(service, ...)`` builds a boto3 client with explicit connect/read
timeouts, botocore's ``standard`` retry mode with a bounded number of attempts, and the
region from ``AWS_REGION`` (or the caller's region setting), from one boto3 session per
process. Clients are thread-safe and cached per (service, region, endpoint, config); the
session is not thread-safe, so it is only used under a lock, and both are rebuilt in a
forked child (a Celery prefork worker must not share its parent's connection pool).
``aws_config()`` is the same ``botocore.config.Config`` for libraries that build their own
client (the Strands ``BedrockModel``).

**Failures.** ``classify_aws_error(exc)`` answers an ``ErrorKind``:

- ``THROTTLED``: throttling codes (``ThrottlingException``, ``TooManyRequestsException``,
  ``SlowDown``, ``RequestLimitExceeded``, ``ProvisionedThroughputExceededException``,
  ``LimitExceededException``, ``ServiceQuotaExceededException``, ...) and HTTP 429. For the
  calls we make, AWS uses ``LimitExceeded``/``ServiceQuotaExceeded`` for rate and
  concurrency limits (botocore's own retry handler reads them the same way); a quota that
  never frees up costs a bounded number of retries, then a visible failure.
- ``RETRYABLE``: 5xx, 408, ``ServiceUnavailable``, ``InternalServerError``, model-not-ready,
  and transport failures (connect/read timeouts, refused or closed connections, an
  incomplete body) and a credential source that did not answer (container/instance role).
- ``AUTH``: ``AccessDenied*``, ``UnrecognizedClientException``, ``InvalidSignatureException``,
  ``ExpiredToken*``, 401/403 and **missing credentials** (``NoCredentialsError``): a
  configuration error an operator must fix, so it is permanent (``ExternalAuthError``).
- ``PERMANENT``: ``ValidationException``, ``ResourceNotFound``, any other 4xx, an unknown
  error code without a status, and client-side errors (invalid parameters, no region,
  unknown service): retrying cannot fix them.

An error code decides first; the HTTP status (``support.errors.http_status_kind``, the same
table outbound HTTP uses) decides for codes not listed here.

``aws_error(exc, context=...)`` turns the exception into the project's error family
(``ThrottledError``/``RetryableError``/``ExternalAuthError``/``PermanentError``), so callers
write::

    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="Titan embeddings") from exc

Reading ``Error.Code`` or ``HTTPStatusCode`` happens only in this module (a test checks):
a caller that expects one particular code (a conditional write that lost, a job already
started) asks ``aws_error_code(exc)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import (
    BotoCoreError,
    CapacityNotAvailableError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    LoginError,
    MetadataRetrievalError,
    NoAuthTokenError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    RefreshWithMFAUnsupportedError,
    SSOError,
    TokenRetrievalError,
    UnknownCredentialError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from support.errors import (
    ErrorKind,
    PermanentError,
    RetryableError,
    error_for_kind,
    http_status_kind,
)

if TYPE_CHECKING:
    import boto3.session
    from botocore.config import Config

__all__ = [
    "ErrorKind",
    "aws_client",
    "aws_clients_clear",
    "aws_config",
    "aws_error",
    "aws_error_code",
    "aws_http_status",
    "aws_session",
    "classify_aws_error",
    "client_config",
    "describe_aws_error",
    "poll_forever",
]

logger = logging.getLogger(__name__)

# --- Classification ---------------------------------------------------------------------

THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ServiceQuotaExceededException",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "KMSThrottlingException",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceFailure",
        "ModelNotReadyException",
        "ModelTimeoutException",
    }
)
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "InvalidToken",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "AuthFailure",
        "AuthorizationError",
        "NotAuthorized",
        "RequestExpired",
        "RequestTimeTooSkewed",
    }
)
AUTH_CODE_PREFIXES = ("AccessDenied", "ExpiredToken")
AUTH_CODE_SUFFIXES = ("AccessDeniedException",)  # KMSAccessDeniedException and the like

# Transport failures: the request may not have arrived, or its answer did not.
_RETRYABLE_BOTOCORE: tuple[type[BaseException], ...] = (
    BotoConnectionError,  # EndpointConnectionError, ConnectTimeoutError, SSLError, proxy
    HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
    IncompleteReadError,
    ChecksumError,
    FlexibleChecksumError,
    CredentialRetrievalError,  # the container/instance credential endpoint did not answer
    MetadataRetrievalError,
)
_THROTTLED_BOTOCORE: tuple[type[BaseException], ...] = (
    CapacityNotAvailableError,  # botocore's own retry quota is spent: the service is failing
)
_AUTH_BOTOCORE: tuple[type[BaseException], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    UnknownCredentialError,
    ProfileNotFound,
    NoAuthTokenError,
    TokenRetrievalError,
    SSOError,
    LoginError,
    RefreshWithMFAUnsupportedError,
)


def _part(exc: ClientError, name: str) -> dict[str, Any]:
    """``exc.response[name]`` as a plain dict (a hand-built ``ClientError`` may lack it)."""
    response = cast(dict[str, Any], exc.response)
    part = response.get(name)
    return part if isinstance(part, dict) else {}


def aws_error_code(exc: BaseException) -> str:
    """``Error.Code`` of a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(_part(exc, "Error").get("Code") or "")
    return ""


def _status(exc: ClientError) -> int:
    try:
        return int(_part(exc, "ResponseMetadata").get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        return 0


def aws_http_status(exc: BaseException) -> int:
    """The HTTP status of a ``ClientError``'s answer (0 for anything else, or none)."""
    return _status(exc) if isinstance(exc, ClientError) else 0


def _retry_after(exc: BaseException) -> float | None:
    from support.outbound import retry_after_from_headers

    if not isinstance(exc, ClientError):
        return None
    return retry_after_from_headers(_part(exc, "ResponseMetadata").get("HTTPHeaders") or {})


def _code_kind(code: str) -> ErrorKind | None:
    if code in THROTTLED_CODES:
        return ErrorKind.THROTTLED
    if code in RETRYABLE_CODES:
        return ErrorKind.RETRYABLE
    if (
        code in AUTH_CODES
        or code.startswith(AUTH_CODE_PREFIXES)
        or code.endswith(AUTH_CODE_SUFFIXES)
    ):
        return ErrorKind.AUTH
    return None


def classify_aws_error(exc: BaseException) -> ErrorKind:
    """What a failed AWS call means: throttled, retryable, auth or permanent."""
    if isinstance(exc, ClientError):
        kind = _code_kind(aws_error_code(exc))
        if kind is not None:
            return kind
        status = _status(exc)
        if status:
            return http_status_kind(status) or ErrorKind.PERMANENT
        return ErrorKind.PERMANENT
    if isinstance(exc, _THROTTLED_BOTOCORE):
        return ErrorKind.THROTTLED
    if isinstance(exc, _RETRYABLE_BOTOCORE):
        return ErrorKind.RETRYABLE
    if isinstance(exc, _AUTH_BOTOCORE):
        return ErrorKind.AUTH
    if isinstance(exc, BotoCoreError):
        # Invalid parameters, no region, unknown service or endpoint, a test stub's
        # mismatch: the request is wrong here, and sending it again cannot help.
        return ErrorKind.PERMANENT
    if isinstance(exc, OSError):  # TimeoutError, ConnectionError, socket errors
        return ErrorKind.RETRYABLE
    return ErrorKind.PERMANENT


def describe_aws_error(exc: BaseException) -> str:
    """``ThrottlingException (HTTP 400): Rate exceeded`` or ``ReadTimeoutError: ...``."""
    if isinstance(exc, ClientError):
        code = aws_error_code(exc) or "ClientError"
        status = _status(exc)
        message = str(_part(exc, "Error").get("Message") or "")
        text = f"{code} (HTTP {status})" if status else code
        return f"{text}: {message}" if message else text
    return f"{type(exc).__name__}: {exc}"


def aws_error(exc: BaseException, *, context: str) -> RetryableError | PermanentError:
    """The project error for a failed AWS call: ``raise aws_error(exc, context=...) from exc``.

    ``ThrottledError`` (with the server's ``Retry-After`` when it sent one) and
    ``RetryableError`` are retried by the caller; ``ExternalAuthError`` and
    ``PermanentError`` are not."""
    kind = classify_aws_error(exc)
    message = f"{context}: {describe_aws_error(exc)}"[:500]
    return error_for_kind(kind, message, retry_after=_retry_after(exc))


# --- Clients ----------------------------------------------------------------------------

RETRY_MODES = ("standard", "adaptive")


def client_config(
    *,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    retry_mode: str = "standard",
) -> Config:
    """A ``botocore.config.Config`` from explicit values (``max_attempts`` counts the first
    try: 1 means no retry inside botocore)."""
    from botocore.config import Config

    if connect_timeout <= 0 or read_timeout <= 0:
        raise ValueError("AWS timeouts must be positive.")
    if max_attempts < 1:
        raise ValueError("AWS max_attempts must be at least 1.")
    if retry_mode not in RETRY_MODES:
        raise ValueError(f"AWS retry mode must be one of {RETRY_MODES}, not {retry_mode!r}.")
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries=cast(Any, {"total_max_attempts": max_attempts, "mode": retry_mode}),
    )


def aws_config(
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_attempts: int | None = None,
    retry_mode: str | None = None,
) -> Config:
    """``client_config`` with the project defaults (``AWS_CONNECT_TIMEOUT``,
    ``AWS_READ_TIMEOUT``, ``AWS_MAX_ATTEMPTS``, standard retry mode) for what is not given."""
    return client_config(**_with_defaults(connect_timeout, read_timeout, max_attempts, retry_mode))


def _with_defaults(
    connect_timeout: float | None,
    read_timeout: float | None,
    max_attempts: int | None,
    retry_mode: str | None,
) -> dict[str, Any]:
    return {
        "connect_timeout": float(
            connect_timeout if connect_timeout is not None else settings.AWS_CONNECT_TIMEOUT
        ),
        "read_timeout": float(
            read_timeout if read_timeout is not None else settings.AWS_READ_TIMEOUT
        ),
        "max_attempts": int(
            max_attempts if max_attempts is not None else settings.AWS_MAX_ATTEMPTS
        ),
        "retry_mode": retry_mode or "standard",
    }


_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "session": None, "clients": {}}


def _fresh_state_locked() -> None:
    if _state["pid"] != os.getpid():
        _state.update(pid=os.getpid(), session=None, clients={})


def _session_locked() -> boto3.session.Session:
    _fresh_state_locked()
    if _state["session"] is None:
        import boto3.session

        _state["session"] = boto3.session.Session()
    session: boto3.session.Session = _state["session"]
    return session


def aws_session() -> boto3.session.Session:
    """The process's boto3 session (credentials from the default chain: environment, the
    container/instance role, a profile). Never build clients from it without the lock:
    use ``aws_client``."""
    with _lock:
        return _session_locked()


def aws_client(
    service: str,
    *,
    region: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_attempts: int | None = None,
    retry_mode: str | None = None,
    endpoint_url: str | None = None,
) -> Any:
    """A boto3 client for ``service`` with explicit timeouts and bounded retries.

    ``region`` defaults to ``AWS_REGION``; ``endpoint_url`` to botocore's own resolution
    (which honours ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``). The other
    arguments override the ``AWS_*`` defaults for one call site (a long Bedrock generation,
    an SQS long poll). Cached per (service, region, endpoint, config) and per process.
    """
    values = _with_defaults(connect_timeout, read_timeout, max_attempts, retry_mode)
    config = client_config(**values)
    resolved_region = region or settings.AWS_REGION or None
    key = (service, resolved_region, endpoint_url or None, *sorted(values.items()))
    with _lock:
        session = _session_locked()
        clients: dict[tuple[Any, ...], Any] = _state["clients"]
        client = clients.get(key)
        if client is None:
            client = session.client(  # type: ignore[call-overload]
                service,
                region_name=resolved_region,
                endpoint_url=endpoint_url or None,
                config=config,
            )
            # A client built while no credentials were found would fail every call until
            # the process restarts: cache only one that has them (the next call looks again).
            if session.get_credentials() is not None:
                clients[key] = client
    return client


def aws_clients_clear() -> None:
    """Forget the session and every cached client (tests; after rotating credentials)."""
    with _lock:
        _state.update(pid=os.getpid(), session=None, clients={})


# --- Long-running pollers -----------------------------------------------------------------


class _StopRequested:
    """SIGTERM / SIGINT seen by :func:`poll_forever` (a flag the loop reads between polls)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is not None:  # a second one: stop now
            raise SystemExit(128 + signum)
        self.signum = signum
        logger.info("Signal %s: stopping after the current poll", signum)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopRequested]:
    """SIGTERM and SIGINT set the flag instead of killing the process mid-message, for the
    duration (the previous handlers come back after). Needed as a container's PID 1,
    which Linux gives no signal it has no handler for: before 2026-12-07 the SQS readers
    ignored ECS's SIGTERM and were killed 120 s later, mid-batch. Outside the main thread
    (no handlers can be set there) the flag is never set."""
    stop = _StopRequested()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stop)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def poll_forever(
    poll: Callable[[], object],
    *,
    once: bool = False,
    what: str = "AWS poll",
    sleep: Callable[[float], None] | None = None,
    max_delay: float = 60.0,
) -> None:
    """Call ``poll`` until stopped (``once``: one successful call), for pollers such as the
    SQS commands. A ``RetryableError`` (throttled, 5xx, timeouts) backs off, honouring a
    ``Retry-After``, up to ``max_delay`` seconds and polls again; with ``once`` it is raised.
    A ``PermanentError`` (no such queue, no permission) is always raised: the caller stops
    with the reason instead of hammering a call that cannot succeed. SIGTERM or SIGINT
    stops the loop once the poll under way has finished (its messages handled: an SQS
    long poll waits up to its ``WaitTimeSeconds`` first); a second one stops it at once."""
    from support.outbound import backoff_seconds

    failures = 0
    with _stop_on_signals() as stop:
        while stop.signum is None:
            try:
                poll()
            except RetryableError as exc:
                if once:
                    raise
                failures += 1
                delay = backoff_seconds(failures, cap=max_delay, retry_after=exc.retry_after)
                logger.warning("%s failed (%s); polling again in %.1f s", what, exc, delay)
                (sleep or time.sleep)(delay)
                continue
            failures = 0
            if once:
                return
    logger.info("%s stopped (signal %s)", what, stop.signum)


def sqs_receive_each(
    client: Any,
    queue_url: str,
    handle: Callable[[dict[str, Any]], bool],
    *,
    wait: int,
    batch: int = 10,
) -> tuple[int, int]:
    """One SQS receive for the poll commands: ``handle(message)`` each message; it is
    deleted when ``handle`` answers True and left on the queue (its redrive policy moves
    it to the dead-letter queue in the end) when False. Answers (deleted, left). SQS
    failures raise ``RetryableError`` / ``PermanentError`` (:func:`aws_error`), for
    :func:`poll_forever`."""
    try:
        response = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=batch, WaitTimeSeconds=wait
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="SQS receive") from exc
    done = left = 0
    for message in response.get("Messages", []):
        if not handle(message):
            left += 1
            continue
        try:
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as exc:
            # Redelivered after the visibility timeout; the handlers' natural keys (intake's
            # event ids, the KB's event keys) make the redelivery a no-op.
            raise aws_error(exc, context="SQS delete") from exc
        done += 1
    return done, left
