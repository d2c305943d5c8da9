"""Test guard: no call to an outside system while a database transaction is open.

A transaction held open across an HTTP or AWS call keeps row locks (and a connection) for as
long as the other system takes to answer: seconds, or the whole timeout when it hangs. Workers
then queue behind the lock, and a rollback after the call has succeeded leaves the outside
system changed with no record of it here. The rule (docs/operations.md, "No network call inside
a transaction"): load what the call needs in a short transaction, commit, call out with no
transaction open, then write the result in a new short transaction that re-checks what it
read; or send the call to ``transaction.on_commit``.

``install()`` wraps the places every outbound call passes through, below our adapters but
above the test doubles, so that mocked calls are seen too:

- ``requests.Session.send`` (``responses`` mocks the transport adapter underneath it);
- ``urllib3.connectionpool.HTTPConnectionPool.urlopen``: urllib3 used directly (urllib3 2
  does not go through ``http.client.HTTPConnection.request``);
- ``httpx.Client.send`` and ``httpx.AsyncClient.send`` (OpenAI-compatible model providers);
- ``botocore.client.BaseClient._make_api_call``: every boto3 client of every session, before
  botocore's ``before-call`` (Stubber) and ``before-send`` (moto) events fire;
- ``http.client.HTTPConnection.request``: anything else (``urllib.request``, vendor SDKs).

A call fails with :class:`NetworkInTransactionError` when the calling thread, or the test's
own thread (for work handed to other threads: ``database_sync_to_async``, Strands agents,
``asyncio.to_thread``; they copy the context this guard keeps its state in), has an atomic
block of the code's own open on any database alias. The atomic blocks
``django.test.TestCase`` opens around each test (pytest-django's ``db`` fixture) carry
``_from_testcase`` and do not count, so the guard sees the same thing in a ``db`` test as in a
``transactional_db`` test and in production. The violation is also recorded on the test's
scope, so a product ``except Exception`` that swallows the error does not hide it: the root
``conftest.py`` fails the test at teardown.

Redis, the channel layer and PostgreSQL itself are not outside systems and are not checked.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

_DJANGO_DIR = os.path.dirname(os.path.dirname(transaction.__file__))
# Frames skipped when naming where an atomic block was opened: Django and the standard library.
_SKIP_DIRS = (_DJANGO_DIR, os.path.dirname(contextlib.__file__))


class NetworkInTransactionError(AssertionError):
    """An outside call was made while a database transaction was open."""


@dataclass
class GuardScope:
    """One test's view of the guard: what it checks and what it found."""

    origin_thread: int
    origin_connections: list[Any]
    allowed: bool = False
    # With ``allowed``: only calls whose description contains one of these are let through
    # (e.g. ``"salesforce.com"``); None lets every call through.
    allowed_only: tuple[str, ...] | None = None
    violations: list[str] = field(default_factory=list)

    def lets_through(self, call: str) -> bool:
        if not self.allowed:
            return False
        return self.allowed_only is None or any(part in call for part in self.allowed_only)


_SCOPE: contextvars.ContextVar[GuardScope | None] = contextvars.ContextVar(
    "network_guard_scope", default=None
)
_installed = False
_originals: dict[tuple[Any, str], Any] = {}


def _opened_at(atomic: Any) -> str:
    return str(getattr(atomic, "_network_guard_opened_at", "unknown place"))


def _code_atomic_blocks(connection: Any) -> list[Any]:
    """The atomic blocks the code opened on ``connection`` (not a test case's wrapper)."""
    if not connection.in_atomic_block:
        return []
    return [a for a in connection.atomic_blocks if not getattr(a, "_from_testcase", False)]


def _connections_to_check(scope: GuardScope | None) -> list[Any]:
    found: list[Any] = list(connections.all(initialized_only=True))
    if scope is not None and scope.origin_thread != threading.get_ident():
        seen = {id(c) for c in found}
        found += [c for c in scope.origin_connections if id(c) not in seen]
    return found


def open_transaction_description() -> str | None:
    """Where a transaction of the code's own is open for this call, or None."""
    scope = _SCOPE.get()
    for connection in _connections_to_check(scope):
        blocks = _code_atomic_blocks(connection)
        if blocks:
            return (
                f"database {connection.alias!r}: atomic block opened at "
                f"{_opened_at(blocks[0])}"
                + (f" (and {len(blocks) - 1} nested)" if len(blocks) > 1 else "")
            )
    return None


def check(call: str) -> None:
    """Fail if ``call`` (e.g. ``POST https://...`` or ``bedrock-runtime.Converse``) runs
    inside a transaction. Called by the installed wrappers; usable by other transports."""
    scope = _SCOPE.get()
    if scope is not None and scope.lets_through(call):
        return
    where = open_transaction_description()
    if where is None:
        return
    message = (
        f"Network call inside a database transaction: {call} while a transaction is open "
        f"on {where}. Commit first and call out with no transaction open (then write the "
        "result in a new short transaction), or use transaction.on_commit. "
        "See docs/operations.md, 'No network call inside a transaction'."
    )
    if scope is not None:
        scope.violations.append(message)
    raise NetworkInTransactionError(message)


def _caller_location() -> str:
    """``path:line in function`` of the code that entered the block; for a function decorated
    with ``@transaction.atomic``, that function's name and its caller."""
    frame: Any = sys._getframe(2)
    decorated: Any = None
    while frame is not None and (
        frame.f_code.co_filename.startswith(_SKIP_DIRS) or frame.f_code.co_filename == __file__
    ):
        if decorated is None and frame.f_code.co_name == "inner" and "func" in frame.f_locals:
            decorated = frame.f_locals["func"]  # contextlib.ContextDecorator's wrapper
        frame = frame.f_back
    if frame is None:
        return "unknown place"
    filename = frame.f_code.co_filename
    root = os.getcwd() + os.sep
    if filename.startswith(root):
        filename = filename[len(root) :]
    where = f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
    if decorated is not None:
        name = f"{decorated.__module__}.{getattr(decorated, '__qualname__', decorated)}"
        return f"@transaction.atomic on {name}, called from {where}"
    return where


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name]
    _originals[(owner, name)] = original
    setattr(owner, name, make(original))


def install() -> None:
    """Wrap the outbound paths (idempotent). For tests only."""
    global _installed
    if _installed:
        return
    import requests
    import urllib3.connectionpool
    from botocore.client import BaseClient

    def atomic_enter(original: Any) -> Any:
        def __enter__(self: Any) -> Any:
            if not getattr(self, "_from_testcase", False):
                self._network_guard_opened_at = _caller_location()
            return original(self)

        return __enter__

    def requests_send(original: Any) -> Any:
        def send(self: Any, request: Any, **kwargs: Any) -> Any:
            check(f"{request.method} {request.url} (requests)")
            return original(self, request, **kwargs)

        return send

    def boto_call(original: Any) -> Any:
        def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
            check(f"{self.meta.service_model.service_name}.{operation_name} (boto3)")
            return original(self, operation_name, api_params)

        return _make_api_call

    def http_request(original: Any) -> Any:
        def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            check(f"{method} {self.host}:{self.port}{url} (http.client)")
            return original(self, method, url, *args, **kwargs)

        return request

    def urllib3_urlopen(original: Any) -> Any:
        def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            where = url if "://" in url else f"{self.scheme}://{self.host}:{self.port}{url}"
            check(f"{method} {where} (urllib3)")
            return original(self, method, url, *args, **kwargs)

        return urlopen

    _patch(transaction.Atomic, "__enter__", atomic_enter)
    _patch(requests.Session, "send", requests_send)
    _patch(urllib3.connectionpool.HTTPConnectionPool, "urlopen", urllib3_urlopen)
    _patch(BaseClient, "_make_api_call", boto_call)
    _patch(http.client.HTTPConnection, "request", http_request)
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is installed with the model providers
        pass
    else:

        def httpx_send(original: Any) -> Any:
            def send(self: Any, request: Any, **kwargs: Any) -> Any:
                check(f"{request.method} {request.url} (httpx)")
                return original(self, request, **kwargs)

            return send

        def httpx_async_send(original: Any) -> Any:
            async def send(self: Any, request: Any, **kwargs: Any) -> Any:
                check(f"{request.method} {request.url} (httpx)")
                return await original(self, request, **kwargs)

            return send

        _patch(httpx.Client, "send", httpx_send)
        _patch(httpx.AsyncClient, "send", httpx_async_send)
    _installed = True


def uninstall() -> None:
    global _installed
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()
    _installed = False


@contextlib.contextmanager
def guard_scope(
    *, allowed: bool = False, allowed_only: tuple[str, ...] | None = None
) -> Iterator[GuardScope]:
    """The scope of one test: its thread's connections and what the guard found.

    Entered before the test's database wrapper may exist, so the connection objects (created
    lazily per thread, without connecting) are fetched here; the ``_from_testcase`` flag, not
    a depth captured now, tells the wrapper from the code's own blocks.
    """
    scope = GuardScope(
        origin_thread=threading.get_ident(),
        origin_connections=[connections[alias] for alias in connections],
        allowed=allowed,
        allowed_only=allowed_only,
    )
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        try:
            _SCOPE.reset(token)
        except ValueError:  # torn down in another context (an async runner's copy)
            _SCOPE.set(None)
