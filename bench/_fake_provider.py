#!/usr/bin/env python
"""A fake channel provider for bench/soak.py: the WhatsApp Cloud API, the Messenger /
Instagram Send API, X's DM API and OAuth 2 token endpoint, SendGrid's mail send and an
external ticketing system, all on one loopback port.

It counts what it accepted, so the soak can tell lost and duplicated deliveries apart
without reading the product's own tables:

- every reply the soak writes carries a marker ``soakreply-<run>-<n>`` in its text; each
  accepted request counts once for the marker it carries (a marker counted twice is a
  reply the customer would have received twice);
- an ``Idempotency-Key`` header, when a request has one, is counted per key too (a
  provider that honours keys would drop the repeats).

``--error-rate`` answers that share of sends ``503`` with ``Retry-After: 1`` before
recording anything (the product must retry them). X access tokens are checked: the
initial pair given on the command line and the pairs issued by ``/2/oauth2/token``
(refresh tokens are single use and rotate, as X's are); an unknown or expired access
token gets 401. ``GET /_counts`` returns the counters as JSON.

    python bench/_fake_provider.py --port 8765 [--error-rate 0.02] [--x-token-ttl 600]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

MARKER = re.compile(rb"soakreply-[0-9a-z]+-\d+")


class State:
    def __init__(self, *, error_rate: float, token_ttl: float) -> None:
        self.lock = threading.Lock()
        self.error_rate = error_rate
        self.token_ttl = token_ttl
        self.accepted: Counter[str] = Counter()  # marker -> accepted requests
        self.refused: Counter[str] = Counter()  # marker -> requests answered 503 / 401
        self.keys: Counter[str] = Counter()  # Idempotency-Key -> accepted requests
        self.kinds: Counter[str] = Counter()  # kind -> accepted requests
        self.injected = 0
        self.unauthorized = 0
        self.refreshes = 0
        self.refresh_refused = 0
        self.access: dict[str, float] = {}  # X access token -> expires at (epoch)
        self.refresh: set[str] = set()  # X refresh tokens not used yet
        self.seq = 0

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "accepted": dict(self.accepted),
                "refused": dict(self.refused),
                "keys": dict(self.keys),
                "kinds": dict(self.kinds),
                "injected": self.injected,
                "unauthorized": self.unauthorized,
                "refreshes": self.refreshes,
                "refresh_refused": self.refresh_refused,
            }


STATE: State


def _kind(path: str) -> str:
    if path.startswith("/2/dm_conversations/"):
        return "x"
    if path.endswith("/me/messages"):
        return "meta_send"
    if path.endswith("/messages"):
        return "graph_messages"  # WhatsApp, and Instagram's <account>/messages
    if path == "/v3/mail/send":
        return "sendgrid"
    if path.startswith("/ticketing"):
        return "ticketing"
    return "other"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_counts":
            self._answer(200, STATE.counts())
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        if path == "/2/oauth2/token":
            self._token(body)
            return
        kind = _kind(path)
        found = MARKER.search(body)
        marker = found.group().decode() if found else ""
        with STATE.lock:
            STATE.seq += 1
            seq = STATE.seq
            if random.random() < STATE.error_rate:  # fault injection, not crypto
                STATE.injected += 1
                if marker:
                    STATE.refused[marker] += 1
                fault = True
            else:
                fault = False
            if not fault and kind == "x" and not self._bearer_ok():
                STATE.unauthorized += 1
                if marker:
                    STATE.refused[marker] += 1
                unauthorized = True
            else:
                unauthorized = False
            if not fault and not unauthorized:
                STATE.kinds[kind] += 1
                if marker:
                    STATE.accepted[marker] += 1
                key = self.headers.get("Idempotency-Key")
                if key:
                    STATE.keys[key] += 1
        if fault:
            self._answer(503, {"error": "injected"}, {"Retry-After": "1"})
        elif unauthorized:
            self._answer(401, {"title": "Unauthorized", "status": 401})
        elif kind == "graph_messages":
            self._answer(
                200,
                {
                    "messaging_product": "whatsapp",
                    "messages": [{"id": f"wamid.fake.{seq}"}],
                    "message_id": f"m_fake.{seq}",  # Instagram's answer
                },
            )
        elif kind == "meta_send":
            self._answer(200, {"recipient_id": "r", "message_id": f"m_fake.{seq}"})
        elif kind == "x":
            self._answer(201, {"data": {"dm_conversation_id": "c", "dm_event_id": str(seq)}})
        elif kind == "sendgrid":
            self._answer(202, None, {"X-Message-Id": f"sg-fake-{seq}"})
        else:
            self._answer(201, {"id": f"fake-{seq}"})

    def _bearer_ok(self) -> bool:
        given = self.headers.get("Authorization", "")
        token = given.removeprefix("Bearer ")
        expires = STATE.access.get(token)
        return expires is not None and expires > time.time()

    def _token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with STATE.lock:
            given = form.get("refresh_token", "")
            if form.get("grant_type") != "refresh_token" or given not in STATE.refresh:
                STATE.refresh_refused += 1
                refused = True
            else:
                refused = False
                STATE.refresh.discard(given)  # single use, as X's
                STATE.refreshes += 1
                STATE.seq += 1
                access, refresh = f"xat-{STATE.seq}", f"xrt-{STATE.seq}"
                STATE.access[access] = time.time() + STATE.token_ttl
                STATE.refresh.add(refresh)
        if refused:
            self._answer(400, {"error": "invalid_request", "error_description": "bad token"})
            return
        self._answer(
            200,
            {
                "token_type": "bearer",
                "expires_in": int(STATE.token_ttl),
                "access_token": access,
                "refresh_token": refresh,
                "scope": "dm.read dm.write tweet.read users.read offline.access",
            },
        )


def main() -> None:
    global STATE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--x-token-ttl", type=float, default=600)
    parser.add_argument("--x-access-token", default="xat-initial")
    parser.add_argument("--x-refresh-token", default="xrt-initial")
    args = parser.parse_args()
    STATE = State(error_rate=args.error_rate, token_ttl=args.x_token_ttl)
    STATE.access[args.x_access_token] = time.time() + args.x_token_ttl
    STATE.refresh.add(args.x_refresh_token)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
