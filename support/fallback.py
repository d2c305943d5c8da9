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
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

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
        logger.warning("%s provider %s failed, falling back: %s", component, provider, exc)
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
