"""The request body floor under every endpoint (support/body_limit.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from support.body_limit import RequestBodyLimit


class Recorder:
    """An application that reads the whole body, then answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.saw_disconnect = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                break
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


def _run(app: Any, *, chunks: list[bytes], length: int | None) -> tuple[int, bytes]:
    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/accounts/login/", "headers": headers}
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


def test_a_declared_length_over_the_limit_is_413_before_the_application_runs() -> None:
    inner = Recorder()
    status, body = _run(RequestBodyLimit(inner, 100), chunks=[b"x" * 101], length=101)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert "101 bytes" in error["message"]
    assert "at most 100 bytes" in error["message"]
    assert not inner.called


def test_a_body_without_a_length_is_cut_off_when_it_passes_the_limit() -> None:
    inner = Recorder()
    status, body = _run(RequestBodyLimit(inner, 100), chunks=[b"x" * 60] * 5, length=None)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert inner.saw_disconnect  # the application stopped reading: the client is gone
    assert len(inner.body) == 60  # the chunk that passed the limit never reached it


@pytest.mark.parametrize("length", [None, 100])
def test_a_body_within_the_limit_reaches_the_application_whole(length: int | None) -> None:
    inner = Recorder()
    status, body = _run(RequestBodyLimit(inner, 100), chunks=[b"a" * 50, b"b" * 50], length=length)
    assert (status, body) == (200, b"100")
    assert inner.body == b"a" * 50 + b"b" * 50


def test_the_deployed_application_refuses_a_huge_anonymous_form_post(settings: Any) -> None:
    """The web process's application (support.asgi) has the limit in front of Django."""
    from support.asgi import application

    huge = settings.REQUEST_MAX_BYTES + 1
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/accounts/login/",
        "raw_path": b"/accounts/login/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(huge).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    assert sent[0]["status"] == 413


def test_the_log_line_never_carries_a_webhook_token(caplog: pytest.LogCaptureFixture) -> None:
    inner = Recorder()
    app: Any = RequestBodyLimit(inner, 100)
    headers = [(b"content-length", b"101")]
    scope = {"type": "http", "method": "POST", "path": "/api/webhooks/whatsapp/s3cr3t-token"}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level("WARNING", logger="support.body_limit"):
        asyncio.run(app({**scope, "headers": headers}, receive, send))
    assert sent[0]["status"] == 413
    assert "POST /api/webhooks" in caplog.text
    assert "s3cr3t" not in caplog.text
