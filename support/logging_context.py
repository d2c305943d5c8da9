"""Structured logs: a request id, the user, the ticket and its correlation id on every line.

The context lives in ``contextvars`` so it follows the code that runs for one request, one
Celery task or one websocket event, whatever the thread or event loop:

- :class:`RequestContextMiddleware` takes the request id from the ``X-Request-ID`` header
  that the load balancer sets, when it is well-formed (else it generates one), returns it in
  the response's ``X-Request-ID``, binds the user's id once the user is known and the
  ticket id from the URL, and writes one line per request (method, route, status, time).
- Celery: :func:`celery_before_publish` copies the context into the headers of each task
  a request (or a task) enqueues, and :func:`celery_task_prerun` binds it again in the
  worker (both connected in ``support.celery``).
- Outbound HTTP: :func:`outbound_headers` adds ``X-Request-ID`` to a call's headers.
- :class:`ContextFilter` (on the handler) puts the four fields on every record,
  :class:`RequestPathFilter` (on the handler too) keeps Django's own request records to
  the route pattern, and :func:`logging_config` builds ``LOGGING`` for ``LOG_FORMAT``
  ``json`` (one JSON object a line, python-json-logger) or ``plain`` (text).

Only identifiers are carried: never names, e-mail addresses, message bodies or secrets.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from support.parsing import without_query_strings

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

FIELDS = ("request_id", "user_id", "ticket_id", "correlation_id")
REQUEST_ID_HEADER = "X-Request-ID"
CELERY_HEADER = "log_context"
# Letters, digits and ``._:-``, 8 to 128 characters (UUIDs, ULIDs, hex, ALB-style ids):
# anything else (spaces, newlines, quotes, overlong values) is replaced by a generated id.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{7,127}")
# Ticket ids and correlation ids as they appear in URLs and task arguments.
_ID_RE = re.compile(r"[A-Za-z0-9\-]{1,64}")

_vars: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"log_{name}", default=None) for name in FIELDS
}

request_logger = logging.getLogger("support.request")


def current() -> dict[str, str]:
    """The known fields of the current context (unknown ones left out)."""
    values = {name: var.get() for name, var in _vars.items()}
    return {name: value for name, value in values.items() if value is not None}


def current_request_id() -> str | None:
    return _vars["request_id"].get()


def _clean(name: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    pattern = _REQUEST_ID_RE if name == "request_id" else _ID_RE
    return text if pattern.fullmatch(text) else None


def _set(values: Mapping[str, object]) -> list[tuple[str, Token[str | None]]]:
    tokens = []
    for name, value in values.items():
        if name in _vars:
            tokens.append((name, _vars[name].set(_clean(name, value))))
    return tokens


def _reset(tokens: list[tuple[str, Token[str | None]]]) -> None:
    for name, token in reversed(tokens):
        _vars[name].reset(token)


def bind(**values: object) -> None:
    """Set fields for the rest of the current context (a request, a task), e.g.
    ``bind(ticket_id=ticket.pk, correlation_id=ticket.correlation_id)``. Values that are
    not well-formed identifiers are dropped."""
    _set(values)


@contextmanager
def bound(**values: object) -> Iterator[None]:
    """Set fields inside a ``with`` block only."""
    tokens = _set(values)
    try:
        yield
    finally:
        _reset(tokens)


def clear() -> None:
    for var in _vars.values():
        var.set(None)


def valid_request_id(value: str | None) -> bool:
    return bool(value) and _REQUEST_ID_RE.fullmatch(value or "") is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def outbound_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus ``X-Request-ID`` when a request id is known (the caller's own
    ``X-Request-ID`` wins)."""
    merged = dict(headers or {})
    request_id = current_request_id()
    if request_id and not any(key.lower() == "x-request-id" for key in merged):
        merged[REQUEST_ID_HEADER] = request_id
    return merged


# Logging: filter, formatters, configuration


class ContextFilter(logging.Filter):
    """Puts the context's fields on every record that passes the handler (``None`` when
    unknown); a field the caller passed in ``extra=`` is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


def request_route(request: Any) -> str:
    """What a log line names for a request: its route pattern (``feedback/<str:token>``),
    never its path or query string, which can hold credentials; ``-`` when no route
    matched."""
    match = getattr(request, "resolver_match", None)
    return (match.route or "/") if match else "-"


class RequestPathFilter(logging.Filter):
    """Django's own request records (``django.request`` for every 4xx and 5xx answer,
    ``django.security.csrf``) name the request's path in the message and carry the request
    in ``extra``, which the JSON format printed as ``<ASGIRequest: POST '/path?query'>``.
    Paths and query strings can hold credentials (a feedback link's signed token,
    SendGrid's inbound ``?token=``, an OIDC callback's ``?code=``): the path in the message
    becomes the route pattern, as on the request line, and the request object is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = record.__dict__.pop("request", None)
        if request is None:
            return True
        path = getattr(request, "path", None)
        if path and isinstance(record.args, tuple):
            # log_response escapes its arguments (unicode_escape): match either spelling
            spellings = {path, path.encode("unicode_escape").decode("ascii")}
            route = request_route(request)
            record.args = tuple(route if arg in spellings else arg for arg in record.args)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, the context's fields and
    whatever the call passed in ``extra=``.

    No URL query string is written, whoever wrote the line: ours, a library's (Celery's
    "Retry in 5s: ConnectionError(... url: /x.jpg?oh=...)"), or the traceback of an
    exception whose message quotes a signed URL (a media file's CDN signature, an S3
    pre-signed URL, SNS's confirmation token): the message and the traceback have
    ``?key=value...`` replaced by ``?<query>``. Done here, on the text written, never on
    the record (other handlers, tests' included, see it whole)."""

    def process_log_record(self, log_data: Any) -> Any:
        for key in ("message", "exc_info", "stack_info"):
            value = log_data.get(key)
            if isinstance(value, str):
                log_data[key] = without_query_strings(value)
        return super().process_log_record(log_data)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["asctime", "levelname", "name", "message", *FIELDS])
        kwargs.setdefault(
            "rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"}
        )
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)


class PlainFormatter(logging.Formatter):
    """The text format (``make run``): the known context fields follow the message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        text = without_query_strings(super().format(record))  # as the JSON format does
        known = [
            f"{name}={value}"
            for name in FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        return f"{text} [{' '.join(known)}]" if known else text


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """``LOGGING`` for ``LOG_FORMAT`` (``json`` or ``plain``)."""
    if log_format not in ("json", "plain"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "support.logging_context.ContextFilter"},
            "request_paths": {"()": "support.logging_context.RequestPathFilter"},
        },
        "formatters": {
            "plain": {"()": "support.logging_context.PlainFormatter"},
            "json": {"()": "support.logging_context.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context", "request_paths"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "celery": {"level": "INFO"},
        },
    }


# Web requests


class RequestContextMiddleware:
    """Binds the log context for one request and writes its access line.

    ``X-Request-ID`` comes from a proxy in front (``LOG_TRUST_REQUEST_ID``; off by default
    in production) and is used only when well-formed: a malformed or missing one is replaced by a
    generated id, so a client cannot inject text into the logs. The response carries the
    id either way. The line names the route pattern, not the path (paths can hold tokens)
    and never the query string or the body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        incoming = request.headers.get(REQUEST_ID_HEADER)
        trusted = getattr(settings, "LOG_TRUST_REQUEST_ID", True)
        request_id = (
            incoming if trusted and incoming and valid_request_id(incoming) else new_request_id()
        )
        request.request_id = request_id  # type: ignore[attr-defined]
        tokens = _set(
            {"request_id": request_id, "user_id": None, "ticket_id": None, "correlation_id": None}
        )
        started = time.monotonic()
        try:
            response = self.get_response(request)
            self._bind_user(request)
            response[REQUEST_ID_HEADER] = request_id
            match = getattr(request, "resolver_match", None)
            request_logger.info(
                "%s %s %s",
                request.method,
                request_route(request),
                response.status_code,
                extra={
                    "method": request.method,
                    "route": match.route if match else None,
                    "view": match.view_name if match else None,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            return response
        finally:
            _reset(tokens)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> None:
        self._bind_user(request)
        if "ticket_id" in kwargs:
            bind(ticket_id=kwargs["ticket_id"])

    @staticmethod
    def _bind_user(request: HttpRequest) -> None:
        user = getattr(request, "user", None)  # DRF's authentication sets it too
        if user is not None and getattr(user, "is_authenticated", False):
            bind(user_id=user.pk)


# Celery (connected in support.celery)


def celery_before_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Copy the current context into the message of a task being enqueued."""
    context = current()
    if headers is not None and context and CELERY_HEADER not in headers:
        headers[CELERY_HEADER] = context


def celery_task_prerun(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    """Bind the enqueuing request's context in the worker (eager tasks already run in it)."""
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False):
        return
    carried = getattr(request, CELERY_HEADER, None)
    if not isinstance(carried, dict):
        carried = (getattr(request, "headers", None) or {}).get(CELERY_HEADER)
    values: dict[str, object] = dict.fromkeys(FIELDS)
    if isinstance(carried, dict):
        values.update({k: v for k, v in carried.items() if k in FIELDS})
    if kwargs and kwargs.get("ticket_id") is not None:
        values["ticket_id"] = kwargs["ticket_id"]
    _set(values)


def celery_task_postrun(task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    if request is not None and not getattr(request, "is_eager", False):
        clear()
