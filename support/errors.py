"""One application error family and one API error shape.

Every API error answers ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status

if TYPE_CHECKING:
    from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "error"
    http_status: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(ApplicationError):
    code = "invalid"


class NotFound(ApplicationError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND


class Conflict(ApplicationError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


class PayloadTooLarge(ApplicationError):
    """A request or file larger than the endpoint takes (the message names the limit)."""

    code = "too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class InvalidTransition(ApplicationError):
    code = "invalid_transition"


class Forbidden(ApplicationError):
    code = "forbidden"
    http_status = status.HTTP_403_FORBIDDEN


class _ExternalCallError(Exception):
    """What a failed external call says beyond its message, for the attempt log (the
    delivery engine reads them, ``support.delivery.registry``): a short ``error_code``
    ("answer_too_large", "x_unauthorized"), the HTTP status, the start of the answer."""

    def __init__(
        self,
        message: str = "",
        *,
        error_code: str = "",
        http_status: int | None = None,
        response_text: str = "",
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status
        self.response_text = response_text


class RetryableError(_ExternalCallError):
    """An external call failed in a way worth retrying (timeout, 5xx, 429)."""

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        error_code: str = "",
        http_status: int | None = None,
        response_text: str = "",
    ) -> None:
        super().__init__(
            message, error_code=error_code, http_status=http_status, response_text=response_text
        )
        self.retry_after = retry_after


class PendingError(RetryableError):
    """The other side took the request and is still working on it (X processing an
    uploaded video): nothing failed. Asked again after ``retry_after`` seconds; the delivery
    engine counts it neither towards the target's circuit nor towards the attempts
    (``support.delivery``: outcome ``pending``). The caller bounds how long it waits."""


class PermanentError(_ExternalCallError):
    """An external call failed for good (other 4xx, bad data): never retried."""


class ThrottledError(RetryableError):
    """The other side asked us to slow down (429, ``ThrottlingException``, ``SlowDown``).

    Retried like any ``RetryableError``, after ``retry_after`` seconds when it said so."""


class ExternalAuthError(PermanentError):
    """The other side refused our credentials or permissions (401/403, ``AccessDenied*``,
    expired or missing credentials). Not retried: an operator must fix the configuration."""


class ErrorKind(StrEnum):
    """What a failed external call means for the caller (HTTP or AWS alike)."""

    THROTTLED = "throttled"  # rate-limited: retry later, more slowly
    RETRYABLE = "retryable"  # timeouts, connection failures, 5xx: retry with backoff
    AUTH = "auth"  # credentials or permissions refused/missing: configuration, not retried
    PERMANENT = "permanent"  # bad request, not found, invalid data: never retried

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.THROTTLED, ErrorKind.RETRYABLE)


# The one table of HTTP statuses (support.outbound.classify_http_status and support.aws use it).
THROTTLED_STATUSES = frozenset({429})
RETRYABLE_STATUSES = frozenset({408, 425})  # and every 5xx
AUTH_STATUSES = frozenset({401, 403})


def http_status_kind(status_code: int) -> ErrorKind | None:
    """``None`` for 2xx; 429 throttled; 408, 425 and 5xx retryable; 401/403 auth; any other
    status permanent."""
    if 200 <= status_code < 300:
        return None
    if status_code in THROTTLED_STATUSES:
        return ErrorKind.THROTTLED
    if status_code in RETRYABLE_STATUSES or status_code >= 500:
        return ErrorKind.RETRYABLE
    if status_code in AUTH_STATUSES:
        return ErrorKind.AUTH
    return ErrorKind.PERMANENT


def error_for_kind(
    kind: ErrorKind, message: str, *, retry_after: float | None = None
) -> RetryableError | PermanentError:
    """The project error for ``kind``: callers ``raise error_for_kind(...) from exc``."""
    if kind is ErrorKind.THROTTLED:
        return ThrottledError(message, retry_after=retry_after)
    if kind is ErrorKind.RETRYABLE:
        return RetryableError(message, retry_after=retry_after)
    if kind is ErrorKind.AUTH:
        return ExternalAuthError(message)
    return PermanentError(message)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _first_message(details: Any) -> str:
    if isinstance(details, dict):
        for field, value in details.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(details, list) and details:
        return _first_message(details[0])
    return str(details)


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map every exception to the one error shape; unknown ones stay 500 and are logged."""
    # Imported here, not at the top: DRF's views and responses read the Django settings when
    # imported, and this module's error classes are raised by code that runs without them
    # (``python -m support.minilm`` in the image build).
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.exception("Unhandled API error in %s", type(view).__name__ if view else "?")
        return None
    assert isinstance(exc, exceptions.APIException)
    # DRF's own classes by the table; one of ours (a subclass of APIException with a code of
    # its own, e.g. ``identity_provider_unavailable``) by its ``default_code``
    code = next(
        (c for cls, c in _CODES.items() if isinstance(exc, cls)),
        str(getattr(exc, "default_code", "") or "error"),
    )
    details: Any = {}
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail
        message = _first_message(details)
    else:
        message = str(exc.detail)
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            details = {"retry_after_seconds": int(wait)}
    response.data = error_body(code, message, details)
    return response
