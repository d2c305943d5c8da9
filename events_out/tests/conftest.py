"""A local HTTP receiver that checks the webhook signature as docs/api.md tells receivers
to, and settings that let webhooks reach it (loopback, plain http)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SECRET = "whsec_test_secret_0123456789"


def receiver_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, written from the documentation (not from our signing code)."""
    items = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in items if k == "t"]
    signatures = [v for k, v in items if k == "v1"]
    if not timestamps or abs(time.time() - int(timestamps[0])) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers ``status`` (200 by default) to every POST and records what came."""

    secret: str = SECRET
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    #: Bytes answered instead of "ok" (sent in 64 KiB writes), and a Content-Length to
    #: declare (none by default: the answer ends when the connection closes).
    answer: bytes | None = None
    answer_length: int | None = None
    #: Headers sent with every answer (a 429's rate-limit headers).
    answer_headers: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = receiver_verify(state.secret, self.headers.get("Support-Signature", ""), body)
            status = state.status if ok else 401
            state.requests.append(Received(dict(self.headers.items()), body, ok, status))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            for name, value in state.answer_headers.items():
                self.send_header(name, value)
            if state.answer_length is not None:
                self.send_header("Content-Length", str(state.answer_length))
            self.end_headers()
            if state.answer is None:
                self.wfile.write(b"ok" if status == 200 else b"receiver failing")
                return
            try:
                for start in range(0, len(state.answer), 65_536):
                    self.wfile.write(state.answer[start : start + 65_536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender stopped reading: what a test of a refused answer wants

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/support"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def local_webhooks(settings: Any) -> Any:
    """Webhooks may reach the loopback receiver over plain http (off by default)."""
    settings.OUTGOING_WEBHOOKS_ALLOW_HTTP = True
    settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTGOING_WEBHOOKS_MAX_ATTEMPTS = 3
    settings.DELIVERY_CIRCUIT_FAILURES = 0
    return settings
