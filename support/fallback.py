"""Fallbacks that hide no bug.

An external provider (an LLM for routing, drafts or call summaries) may fail for reasons
outside our code: an outage, throttling, a refusal, an answer in the wrong shape. Callers
then fall back to their offline path, which is the point of having one. A *programming
error* (``TypeError``, ``AttributeError``, ``KeyError``, ``NameError`` ...) is different: it
is a bug in our code or in how we call a library, and a fallback would hide it for ever.

:func:`provider_failure` is called from the ``except`` block of every such fallback:

- an expected failure is logged as a warning (no traceback) and the caller falls back;
- a programming error is logged at ERROR **with its traceback**, counted in this process
  (:func:`programming_error_count`, per component in :func:`programming_error_counts`;
  ``/health`` reports the total under ``counters``), and re-raised when
  ``PROVIDER_RAISE_PROGRAMMING_ERRORS`` is on (the default in tests, so the suite fails
  on one; off in production, where the ticket still gets the offline answer).

What a failure says in a log or a stored fallback reason is :func:`provider_error_summary`,
never ``str(exc)``: a provider's exception may quote the model's answer (a pydantic
``ValidationError`` shows the ``input_value`` it refused, and Strands'
``StructuredOutputException`` repeats it), and the answer may quote the customer.
"""

from __future__ import annotations

import logging
import re
import threading

from django.conf import settings
from pydantic import ValidationError

from support.aws import aws_error_code, aws_http_status

logger = logging.getLogger(__name__)

# How much of a failure's cause chain, and of a validation error's list, a summary names.
_MAX_CAUSES = 4
_MAX_FIELD_ERRORS = 5
# A field location part that names a schema field (dict keys the model invented are not).
_FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class ProviderFailed(Exception):
    """A provider failure raised by our own code, with a message composed only of
    :func:`provider_error_summary` texts and our own words: safe to log and store."""


def _field_errors(exc: ValidationError) -> str:
    """Where and how a validation failed: ``reasoning: string_type``, never the value."""
    described = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(
            str(part) if isinstance(part, int) or _FIELD_NAME_RE.fullmatch(str(part)) else "?"
            for part in error.get("loc", ())
        )
        described.append(f"{loc or '(root)'}: {error.get('type', '?')}")
    more = exc.error_count() - _MAX_FIELD_ERRORS
    shown = "; ".join(described[:_MAX_FIELD_ERRORS])
    return shown + (f"; {more} more" if more > 0 else "")


def _one_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, ValidationError):
        return f"{name} ({_field_errors(exc)})"
    code = aws_error_code(exc)
    details = [code] if code and code != name else []
    status = aws_http_status(exc)
    details += [f"HTTP {status}"] if status else []
    return f"{name} ({', '.join(details)})" if details else name


def provider_error_summary(exc: BaseException) -> str:
    """What a provider failure may say in a log or a stored reason: the exception's type
    and those of its causes (``raise … from``), an AWS error's code and HTTP status, and
    for a pydantic ``ValidationError`` the failing fields and error types (``loc`` and
    ``type`` from ``errors()``). Never ``str(exc)`` nor an input value, which may be the
    model's answer quoting the customer. A :class:`ProviderFailed` says its own message
    (composed of such summaries)."""
    if isinstance(exc, ProviderFailed):
        return str(exc)
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < _MAX_CAUSES:
        if isinstance(current, ProviderFailed):
            parts.append(str(current))
            break
        parts.append(_one_error(current))
        current = current.__cause__
    return " <- ".join(parts)


PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    NameError,  # UnboundLocalError too
    AssertionError,
    NotImplementedError,
)


class _Counts:
    lock = threading.Lock()
    total = 0
    by_component: dict[str, int] = {}  # one process-wide tally


def is_programming_error(exc: BaseException) -> bool:
    return isinstance(exc, PROGRAMMING_ERRORS)


def programming_error_count() -> int:
    """Programming errors that a provider fallback met in this process since it started."""
    return _Counts.total


def programming_error_counts() -> dict[str, int]:
    """The same, per component (``routing``, ``drafts``, ``call_summary`` ...)."""
    with _Counts.lock:
        return dict(_Counts.by_component)


def provider_failure(exc: BaseException, *, component: str, provider: str) -> None:
    """Record why ``provider`` failed for ``component``; call it from the ``except`` block
    that is about to fall back. Re-raises ``exc`` when it is a programming error and
    ``PROVIDER_RAISE_PROGRAMMING_ERRORS`` is on."""
    if not is_programming_error(exc):
        logger.warning(
            "%s provider %s failed, falling back: %s",
            component,
            provider,
            provider_error_summary(exc),
        )
        return
    with _Counts.lock:
        _Counts.total += 1
        _Counts.by_component[component] = _Counts.by_component.get(component, 0) + 1
        count = _Counts.total
    logger.error(
        "Programming error in the %s provider %s (%s so far in this process); "
        "falling back would hide it",
        component,
        provider,
        count,
        exc_info=exc,
    )
    if settings.PROVIDER_RAISE_PROGRAMMING_ERRORS:
        raise exc
