"""The shared webhook test base: accounts with test secrets, posting a signed fixture,
and a snapshot of every table a delivery may touch (to assert exactly what changed)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from channels_app.adapters.base import OutboundFile, OutboundRequest
from channels_app.fixtures import Fixture, fixture_load, signed_headers
from channels_app.models import ChannelAccount, InboundEvent
from channels_app.services import channel_account_upsert
from channels_app.services import outbound as outbound_module
from support.delivery.models import Attempt, Delivery
from tickets.models import Attachment, ChannelIdentity, Customer, Message, Ticket

TEST_SECRET = "test-app-secret"
#: "Now" for the customer's messages the tests post (:func:`written_just_now`,
#: :func:`wa_body`): one time for the whole run, so a payload posted twice is the same
#: bytes (a redelivery), and well inside Meta's 24-hour window.
WRITTEN_AT = int(time.time())


def make_account(channel: str, name: str = "main", **extra: Any) -> ChannelAccount:
    defaults: dict[str, Any] = {
        "whatsapp": {"external_id": "106540352242922", "app_secret": TEST_SECRET},
        "messenger": {"external_id": "107240291734629", "app_secret": TEST_SECRET},
        "instagram": {"external_id": "17841405822304914", "app_secret": TEST_SECRET},
        "twitter": {"external_id": "3001969357", "consumer_secret": TEST_SECRET},
        "email": {"external_id": "support@acme.test", "inbound_token": TEST_SECRET},
        "webchat": {},
        "chatbot": {"app_secret": TEST_SECRET},
    }[channel]
    values = {**defaults, "access_token": "test-access-token", **extra}
    return channel_account_upsert(channel=channel, name=name, **values)


@dataclass
class Counts:
    customers: int
    identities: int
    tickets: int
    messages: int
    attachments: int
    events: int
    deliveries: int
    attempts: int


def counts() -> Counts:
    return Counts(
        customers=Customer.objects.count(),
        identities=ChannelIdentity.objects.count(),
        tickets=Ticket.objects.count(),
        messages=Message.objects.count(),
        attachments=Attachment.objects.count(),
        events=InboundEvent.objects.count(),
        deliveries=Delivery.objects.count(),
        attempts=Attempt.objects.count(),
    )


def diff(before: Counts, after: Counts) -> dict[str, int]:
    return {
        k: getattr(after, k) - getattr(before, k)
        for k in before.__dict__
        if getattr(after, k) != getattr(before, k)
    }


def http_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in headers.items():
        name = key.upper().replace("-", "_")
        if name == "CONTENT_TYPE":
            continue
        out[f"HTTP_{name}"] = value
    return out


def post_signed(client: Client, account: Any, body: bytes) -> Any:
    """POST ``body`` to ``account``'s webhook, signed as Meta signs (X-Hub-Signature-256)."""
    sig = "sha256=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.generic(
        "POST",
        account.webhook_path,
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=sig,
    )


def post_raw(
    client: Client, account: ChannelAccount, body: bytes, headers: dict[str, str], query: str = ""
) -> Any:
    content_type = next(
        (v for k, v in headers.items() if k.lower() == "content-type"), "application/json"
    )
    return client.generic(
        "POST",
        account.webhook_path + query,
        data=body,
        content_type=content_type,
        **http_headers(headers),  # type: ignore[arg-type]
    )


def _message_times(channel: str, payload: Any) -> list[tuple[str, int, bool]]:
    """The customer's messages' times in a Meta payload: (field, value, as a string):
    WhatsApp ``messages[].timestamp`` (seconds, a string), Messenger's and Instagram's
    ``messaging[].timestamp`` of a message (milliseconds)."""
    found: list[tuple[str, int, bool]] = []
    for entry in payload.get("entry", []) if isinstance(payload, dict) else []:
        if channel == "whatsapp":
            for change in entry.get("changes", []):
                for message in (change.get("value") or {}).get("messages", []):
                    if str(message.get("timestamp", "")).isdigit():
                        found.append(("timestamp", int(message["timestamp"]), True))
        else:
            for event in entry.get("messaging", []):
                if "message" in event and isinstance(event.get("timestamp"), int):
                    found.append(("timestamp", event["timestamp"], False))
    return found


def written_just_now(channel: str, body: bytes) -> bytes:
    """``body`` with its customer messages' times moved to now (their order kept), the rest
    byte for byte: a fixture stands for what the customer has just written, and a reply
    to it must fall inside Meta's 24-hour window, which is counted from the time the
    customer wrote (``channels_app.selectors.last_inbound_at``), not from when we
    received it. Only Meta's channels have such a window."""
    if channel not in ("whatsapp", "messenger", "instagram"):
        return body
    try:
        times = _message_times(channel, json.loads(body))
    except ValueError:
        return body
    if not times:
        return body
    now = WRITTEN_AT * (1000 if channel != "whatsapp" else 1)
    shift = now - max(value for _, value, _ in times)
    for field, value, quoted in times:
        old, new = str(value), str(value + shift)
        if quoted:
            old, new = f'"{old}"', f'"{new}"'
        pattern = rf'("{field}"\s*:\s*){re.escape(old)}(?!\d)'.encode()
        body = re.sub(pattern, rb"\g<1>" + new.encode(), body)
    return body


@pytest.fixture
def post_fixture(client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Post a fixture signed for ``account`` and run what is committed (eager tasks).
    A signed fixture's customer messages are written just now (:func:`written_just_now`;
    ``as_recorded=True``: at the fixture's own times)."""

    def _post(
        account: ChannelAccount,
        name: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        sign: bool = True,
        as_recorded: bool = False,
    ) -> Any:
        fixture = fixture_load(account.channel, name)
        if body is not None:
            fixture = Fixture(headers=fixture.headers, body=body, session=fixture.session)
        if sign and not as_recorded:
            fresh = written_just_now(account.channel, fixture.body)
            fixture = Fixture(headers=fixture.headers, body=fresh, session=fixture.session)
        sent = signed_headers(account, fixture) if sign else dict(fixture.headers)
        sent.update(headers or {})
        with django_capture_on_commit_callbacks(execute=True):
            return post_raw(client, account, fixture.body, sent)

    return _post


def wa_body(sender: str, message_id: str, text: str) -> bytes:
    """One WhatsApp Cloud API delivery holding one text message."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "106540352242922"},
                            "contacts": [{"profile": {"name": "Ana"}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": message_id,
                                    "timestamp": str(WRITTEN_AT),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> list[OutboundFile]:
    """The files an agent's reply carries (replies with files: ``test_reply_files``,
    ``test_twitter_reply_media``): appended by the test, added to the ``OutboundRequest``
    the engine builds for the reply. (``test_email_reply_files`` has a ``files`` of its
    own: the attachments it stores.)"""
    attached: list[OutboundFile] = []
    original = outbound_module._outbound_request

    def with_files(*args: Any, **kwargs: Any) -> OutboundRequest:
        return dataclasses.replace(original(*args, **kwargs), files=tuple(attached))

    monkeypatch.setattr(outbound_module, "_outbound_request", with_files)
    return attached
