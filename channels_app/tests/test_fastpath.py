"""The ASGI fast path answers channel webhook POSTs exactly as the Django view does, and
hands everything else (and anything its checks cannot vouch for) to Django."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from channels_app.api.fastpath import WebhookFastPath
from channels_app.models import InboundEvent
from channels_app.tests.conftest import TEST_SECRET, make_account, wa_body

pytestmark = pytest.mark.django_db(transaction=True)

BODY = wa_body("34600000001", "wamid.fast1", "hola")


class Fallback:
    """Stands in for Django: records what it was handed."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})


def _call(
    app: WebhookFastPath,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []
    chunks = [body[:10], body[10:]]  # the body arrives in two messages

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "scheme": "http",
        "client": ("10.0.0.7", 5555),
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"host": "testserver", **(headers or {})}.items()
        ],
    }
    async_to_sync(app)(scope, receive, send)
    start = sent[0]
    response_headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], response_headers, b"".join(m.get("body", b"") for m in sent[1:])


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + digest, "Content-Type": "application/json"}


@pytest.fixture
def app(settings: Any) -> tuple[WebhookFastPath, Fallback]:
    settings.ALLOWED_HOSTS = ["testserver"]
    fallback = Fallback()
    return WebhookFastPath(fallback, threads=2), fallback


def test_signed_delivery_is_recorded_once_and_redelivery_is_a_duplicate(app: Any) -> None:
    fast, fallback = app
    account = make_account("whatsapp")
    code, headers, body = _call(fast, account.webhook_path, BODY, headers=_signed(BODY))
    assert (code, json.loads(body)["status"]) == (200, "accepted")
    assert headers["x-content-type-options"] == "nosniff"
    code, _, body = _call(fast, account.webhook_path, BODY, headers=_signed(BODY))
    assert (code, json.loads(body)["status"]) == (200, "duplicate")
    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().body_bytes == BODY
    assert fallback.paths == []


def test_forged_unknown_and_malformed_get_the_views_errors(app: Any) -> None:
    fast, _ = app
    account = make_account("whatsapp")
    forged = {**_signed(BODY), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    code, _, body = _call(fast, account.webhook_path, BODY, headers=forged)
    assert code in (401, 403)
    assert json.loads(body)["error"]["code"] == "invalid_signature"
    code, _, body = _call(fast, "/api/webhooks/whatsapp/nope", BODY, headers=_signed(BODY))
    assert (code, json.loads(body)["error"]["code"]) == (404, "not_found")
    bad = b"{not json"
    code, _, body = _call(fast, account.webhook_path, bad, headers=_signed(bad))
    assert (code, json.loads(body)["error"]["code"]) == (400, "malformed_payload")
    assert InboundEvent.objects.filter(status="received").count() == 0


def test_rate_limit_answers_429_with_retry_after(app: Any, settings: Any) -> None:
    fast, _ = app
    settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE = 0
    account = make_account("whatsapp")
    code, headers, _ = _call(fast, account.webhook_path, BODY, headers=_signed(BODY))
    assert code == 429
    assert int(headers["retry-after"]) >= 1


def test_everything_else_goes_to_django(app: Any, settings: Any) -> None:
    fast, fallback = app
    account = make_account("whatsapp")
    _call(fast, account.webhook_path, method="GET")  # the subscription handshake
    _call(fast, "/api/webhooks/email/abc", BODY)  # multipart channel
    _call(fast, "/api/webhooks/webchat/abc", BODY)  # CORS channel
    _call(fast, "/api/tickets", BODY)
    _call(fast, account.webhook_path, BODY, headers={**_signed(BODY), "Host": "evil.example"})
    settings.SECURE_SSL_REDIRECT = True
    _call(fast, account.webhook_path, BODY, headers=_signed(BODY))  # plain http
    assert len(fallback.paths) == 6
    assert InboundEvent.objects.count() == 0


# --- body limits: nothing is read before the checks that need no body ------------------


def _call_counting(
    app: WebhookFastPath, path: str, chunks: list[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, Any], int]:
    """POST ``chunks`` as separate ASGI messages; (status, JSON, receive() calls made)."""
    sent: list[dict[str, Any]] = []
    pending = list(chunks)
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "scheme": "http",
        "client": ("10.0.0.7", 5555),
        "headers": [
            (k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **headers}.items()
        ],
    }
    async_to_sync(app)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], json.loads(body), reads


def test_oversize_content_length_is_refused_before_reading(app: Any) -> None:
    fast, fallback = app
    account = make_account("whatsapp")
    headers = {**_signed(BODY), "Content-Length": "2000000"}
    code, payload, reads = _call_counting(fast, account.webhook_path, [BODY], headers)
    assert (code, payload["error"]["code"], reads) == (413, "too_large", 0)
    assert payload["error"]["details"] == {"max_bytes": 1_048_576}  # the JSON channels' cap
    assert "1048576 bytes" in payload["error"]["message"]
    assert InboundEvent.objects.count() == 0
    assert fallback.paths == []


def test_unknown_token_and_rate_limit_are_answered_before_reading(app: Any, settings: Any) -> None:
    fast, _ = app
    code, _, reads = _call_counting(fast, "/api/webhooks/whatsapp/nope", [BODY], _signed(BODY))
    assert (code, reads) == (404, 0)
    settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE = 0
    account = make_account("whatsapp")
    code, _, reads = _call_counting(fast, account.webhook_path, [BODY], _signed(BODY))
    assert (code, reads) == (429, 0)


def test_a_chunked_body_stops_being_read_past_the_cap(app: Any) -> None:
    fast, _ = app
    account = make_account("whatsapp")
    chunk = b" " * 65_536
    chunks = [chunk] * 40  # 2.5 MiB, no Content-Length (chunked transfer encoding)
    headers = {"X-Hub-Signature-256": "sha256=" + "0" * 64, "Transfer-Encoding": "chunked"}
    code, payload, reads = _call_counting(fast, account.webhook_path, chunks, headers)
    assert (code, payload["error"]["code"]) == (413, "too_large")
    assert reads == 17  # 16 chunks make exactly 1 MiB; the 17th passes it, the rest stay unread
    assert InboundEvent.objects.count() == 0


def test_the_cap_is_inclusive(app: Any, settings: Any) -> None:
    fast, _ = app
    account = make_account("whatsapp")
    settings.CHANNELS_WEBHOOK_MAX_BYTES = len(BODY) - 1
    code, _, _ = _call_counting(fast, account.webhook_path, [BODY[:10], BODY[10:]], _signed(BODY))
    assert code == 413
    settings.CHANNELS_WEBHOOK_MAX_BYTES = len(BODY)
    code, payload, _ = _call_counting(
        fast, account.webhook_path, [BODY[:10], BODY[10:]], _signed(BODY)
    )
    assert (code, payload["status"]) == (200, "accepted")


@pytest.mark.django_db
def test_a_nul_in_the_token_goes_to_django_which_refuses_it(app: Any) -> None:
    """The token reached PostgreSQL's query (DataError: a 500); Django's middleware answers
    400 for any path with a NUL (support.middleware.RejectNulCharactersMiddleware)."""
    fast, fallback = app
    code, _, _ = _call(fast, "/api/webhooks/whatsapp/ab\x00cd", BODY, headers=_signed(BODY))
    assert code == 299  # the fallback stands in for Django
    assert fallback.paths == ["/api/webhooks/whatsapp/ab\x00cd"]
    assert InboundEvent.objects.count() == 0
