"""What an integration registers with the delivery engine: a :class:`TargetKind`.

A kind says two small things, and the engine does the rest (leases, attempts, backoff,
dead letters, circuits, the sweep):

- ``send(delivery) -> SendResult``: send one payload (vendor HTTP stays in the
  integration's adapter); return what the target answered, or raise a
  :class:`DeliveryError` (or the shared ``RetryableError`` / ``PermanentError``).
- ``classify(result) -> Outcome``: success, retryable, throttled, auth or permanent.
  The default reads the HTTP status (:func:`classify_http`).

Kinds register in their app's ``AppConfig.ready()``; settings are read when a function
runs, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import urllib3
from django.conf import settings

from support.delivery.models import Outcome
from support.errors import PendingError, PermanentError, RetryableError, ThrottledError
from support.outbound import backoff_seconds

if TYPE_CHECKING:
    from support.delivery.models import Delivery


@dataclass(frozen=True)
class SendResult:
    """What the target answered to one send."""

    http_status: int | None = None
    external_id: str = ""
    retry_after: float | None = None
    request_summary: dict[str, Any] = field(default_factory=dict)
    response_summary: str = ""
    error: str = ""  # the target's complaint, when ``classify`` says it failed
    error_code: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # anything the kind's hooks need


class DeliveryError(Exception):
    """A send that failed, already classified by the integration."""

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome,
        http_status: int | None = None,
        retry_after: float | None = None,
        error_code: str = "",
        response_text: str = "",
        possible_duplicate: bool = False,
    ) -> None:
        super().__init__(message)
        self.outcome = Outcome(outcome)
        self.http_status = http_status
        self.retry_after = retry_after
        self.error_code = error_code
        self.response_text = response_text
        #: The request may have reached the target (:func:`possibly_sent`): where the kind
        #: cannot deduplicate, the engine counts the delivery ``possible_duplicate``.
        self.possible_duplicate = possible_duplicate


_E = TypeVar("_E", bound=Exception)


def possibly_sent(exc: _E, maybe: bool = True) -> _E:
    """``exc`` marked as a failure whose request may have reached the target (``maybe``;
    False takes the mark off): a POST whose answer timed out or broke off after it was
    sent, a send the target accepted whose record then failed. The engine keeps the mark
    (:func:`error_from_exception`) and counts the delivery ``possible_duplicate`` where the
    kind cannot deduplicate, as for a lost lease: a retry may be a second copy."""
    exc.possible_duplicate = maybe  # type: ignore[attr-defined]
    return exc


#: Where ``urllib3`` opens a connection: DNS, TCP connect, a proxy's tunnel, the TLS
#: handshake and the certificate check all run inside ``HTTPConnection.connect``
#: (``HTTPSConnectionPool._validate_conn`` calls it before the request; for plain HTTP,
#: ``http.client`` calls it on the first write). Nothing of the request has left then.
_CONNECT_FRAME = ("urllib3.connection", "connect")
#: Every request ``urllib3`` makes passes through this frame (connect, send, read).
_REQUEST_FRAME = ("urllib3.connectionpool", "_make_request")


def request_possibly_sent(exc: BaseException) -> bool:
    """Whether a ``requests`` call that failed before its answer's status came may have
    reached the other side (for :func:`possibly_sent`). Not when it failed while the
    connection was being made; yes once it was made (the request written, the answer
    awaited).

    The exception's type cannot tell (review of 2026-12-07): urllib3 reports a TLS failure
    while the answer is awaited (a bad record, an alert) as ``requests.exceptions.SSLError``
    wrapping ``MaxRetryError``, exactly as a failed handshake, and a handshake that timed
    out or was reset as ``ReadTimeout`` / ``ConnectionError("Connection aborted.")``,
    exactly as an answer that did. So where the failure was raised decides: a traceback in
    the exception's chain that passes through ``urllib3.connection.HTTPConnection.connect``
    is a connection never made; one that reached urllib3's request without it is a request
    sent (a body cut off while being written counts too: what the kernel passed on cannot
    be told). With no such traceback (an error built by hand, e.g. by a test double),
    the type decides: a connect timeout, a proxy failure or a ``MaxRetryError`` that
    failed to connect (refused, no such host) is not sent; anything else, a TLS error
    included, may have been.
    """
    chain = _exception_chain(exc)
    frames = {frame for error in chain for frame in _frames(error)}
    if _CONNECT_FRAME in frames:
        return False
    if _REQUEST_FRAME in frames:
        return True
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return False
    return not any(
        isinstance(error, urllib3.exceptions.MaxRetryError)
        # NewConnectionError (refused, no such host) is a ConnectTimeoutError
        and isinstance(error.reason, urllib3.exceptions.ConnectTimeoutError)
        for error in chain
    )


def _exception_chain(exc: BaseException, limit: int = 16) -> list[BaseException]:
    """``exc`` and the exceptions it wraps: ``requests`` keeps urllib3's in ``args``, a
    ``MaxRetryError`` its ``reason``, urllib3 the socket's or ``ssl``'s in ``__cause__``
    or ``__context__``."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < limit:
        error = todo.pop(0)
        if not isinstance(error, BaseException) or any(error is seen for seen in found):
            continue
        found.append(error)
        todo.extend(error.args)
        todo.extend((getattr(error, "reason", None), error.__cause__, error.__context__))
    return found


def _frames(error: BaseException) -> set[tuple[str, str]]:
    """(module, function) of each frame ``error`` was raised through."""
    frames = set()
    tb = error.__traceback__
    while tb is not None:
        frames.add((str(tb.tb_frame.f_globals.get("__name__", "")), tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return frames


#: ``error_code`` of a send whose answer was over what the integration reads
#: (``support.outbound.AnswerTooLarge``).
ANSWER_TOO_LARGE = "answer_too_large"


def answer_too_large_error(exc: Exception, *, whose: str) -> DeliveryError:
    """The permanent failure of a send whose answer (``whose``: "The ticketing system's")
    was refused unread for its size (``support.outbound.AnswerTooLarge``, its status
    kept): not a passing fault, the endpoint answers this way."""
    response = getattr(exc, "response", None)
    return DeliveryError(
        f"{whose} answer was refused: {exc} (not read).",
        outcome=Outcome.PERMANENT,
        http_status=response.status_code if response is not None else None,
        error_code=ANSWER_TOO_LARGE,
    )


def classify_http(status: int | None) -> Outcome:
    """No HTTP (e.g. a websocket push) or 2xx: success; 429 throttled; 401 auth; 408, 425
    and 5xx retryable; any other status (other 4xx, 3xx) permanent."""
    if status is None or 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 429:
        return Outcome.THROTTLED
    if status == 401:
        return Outcome.AUTH
    if status in (408, 425) or status >= 500:
        return Outcome.RETRYABLE
    return Outcome.PERMANENT


def classify_result(result: SendResult) -> Outcome:
    return classify_http(result.http_status)


def error_from_exception(exc: Exception) -> DeliveryError:
    """Map an integration's exception to a classified :class:`DeliveryError`.

    ``RetryableError`` is retryable (throttled for a 429 or a ``ThrottledError``, such as an
    AWS ``ThrottlingException`` classified by ``support.aws``, or the ``outcome`` attribute it
    carries: throttled or auth; a ``PendingError`` is pending: the target is still working on
    it), ``PermanentError`` permanent; ``http_status``,
    ``error_code`` (or ``code``), ``response_text`` and ``possible_duplicate``
    (:func:`possibly_sent`) attributes are kept when present.
    """
    if isinstance(exc, DeliveryError):
        return exc
    duplicate = bool(getattr(exc, "possible_duplicate", False))
    http_status = getattr(exc, "http_status", None)
    code = str(getattr(exc, "error_code", "") or getattr(exc, "code", "") or "")
    response_text = str(getattr(exc, "response_text", "") or "")
    if isinstance(exc, RetryableError):
        throttled = http_status == 429 or isinstance(exc, ThrottledError)
        outcome = Outcome.THROTTLED if throttled else Outcome.RETRYABLE
        if isinstance(exc, PendingError):
            outcome = Outcome.PENDING
        explicit = getattr(exc, "outcome", None)  # an adapter that knows better (auth…)
        if explicit in (Outcome.RETRYABLE, Outcome.THROTTLED, Outcome.AUTH):
            outcome = Outcome(explicit)
        return DeliveryError(
            str(exc),
            outcome=outcome,
            http_status=http_status,
            retry_after=exc.retry_after,
            error_code=code,
            response_text=response_text,
            possible_duplicate=duplicate,
        )
    if isinstance(exc, PermanentError):
        return DeliveryError(
            str(exc),
            outcome=Outcome.PERMANENT,
            http_status=http_status,
            error_code=code,
            response_text=response_text,
            possible_duplicate=duplicate,
        )
    # Anything else is a bug or an unexpected library error: retried (bounded), logged.
    return DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE)


@dataclass(frozen=True)
class Schedule:
    """When to try again, and when to give up.

    ``delays`` (seconds before retry 1, 2, …; the last one repeats) or exponential backoff
    from ``base`` capped at ``cap`` with ±20% ``jitter``. After ``max_attempts`` attempts
    the delivery is a dead letter. A target's ``Retry-After`` wins when it asks for longer
    (up to ``retry_after_cap``, default ``DELIVERY_RETRY_AFTER_MAX_SECONDS``).
    """

    max_attempts: int
    delays: tuple[float, ...] = ()
    base: float = 2.0
    cap: float = 600.0
    jitter: bool = True
    retry_after_cap: float | None = None

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts (1-based)."""
        if self.delays:
            delay = float(self.delays[min(max(attempts, 1), len(self.delays)) - 1])
        else:
            delay = backoff_seconds(attempts, base=self.base, cap=self.cap, jitter=self.jitter)
        if retry_after is not None:
            cap = self.retry_after_cap
            if cap is None:
                cap = float(settings.DELIVERY_RETRY_AFTER_MAX_SECONDS)
            delay = max(delay, min(retry_after, cap))
        return delay


class Change:
    """What happened to a delivery, for a kind's ``on_change`` hook (run in the same
    transaction as the engine's write, so domain state never disagrees with it)."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"
    REDRIVEN = "redriven"


@dataclass(frozen=True)
class DeliveryChange:
    event: str  # a Change value
    result: SendResult | None = None
    error: str = ""
    error_code: str = ""
    gave_up: bool = False  # dead because retries ran out (not a permanent answer)


def _default_schedule() -> Schedule:
    return Schedule(max_attempts=5)


@dataclass(frozen=True)
class TargetKind:
    """An integration's outbound kind (see the module docstring)."""

    name: str
    send: Callable[[Delivery], SendResult]
    classify: Callable[[SendResult], Outcome] = classify_result
    schedule: Callable[[], Schedule] = _default_schedule
    on_change: Callable[[Delivery, DeliveryChange], None] | None = None
    #: Whether the target drops a repeated send of the same delivery (an idempotency key,
    #: an upsert, an id the client checks). Where it cannot, a send repeated after a lost
    #: lease is counted (``Delivery.possible_duplicate``).
    deduplicates: Callable[[Delivery], bool] = field(default=lambda delivery: False)
    #: Seconds a claim holds the delivery; longer than any send can take (the attempt task
    #: is killed at 90 s). Empty: ``DELIVERY_LEASE_SECONDS``.
    lease_seconds: Callable[[], float] | None = None
    #: Celery queue of the attempt task (e.g. "realtime" for what a person waits for).
    queue: Callable[[], str | None] = field(default=lambda: None)
    label: str = ""


_kinds: dict[str, TargetKind] = {}


def target_kind_register(kind: TargetKind) -> None:
    """Register (or replace, e.g. in tests) a target kind by name."""
    _kinds[kind.name] = kind


def target_kind_get(name: str) -> TargetKind | None:
    return _kinds.get(name)


def target_kinds() -> dict[str, TargetKind]:
    return dict(_kinds)


def target_kind_unregister(name: str) -> None:
    _kinds.pop(name, None)
