"""The channel adapter interface, the normalised events and the registry.

An adapter verifies a webhook delivery, checks it is well formed, parses it into
normalised events, sends replies and fetches media. Vendor HTTP lives only in adapters;
every call has a timeout and failures map to ``RetryableError`` / ``PermanentError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings

from support.errors import PermanentError, RetryableError
from support.models import AttemptOutcome
from support.outbound import classify_http_status, parse_retry_after

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount


class SignatureError(Exception):
    """Missing or forged signature: the delivery is refused (401/403) and counted."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class MalformedPayload(Exception):
    """The body is not what the channel sends (bad JSON, bad multipart): 400."""


@dataclass(frozen=True)
class WebhookRequest:
    """What an adapter sees of a webhook request: lower-cased headers, raw body, query."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class MediaRef:
    kind: str  # tickets.models.AttachmentKind value
    media_id: str = ""
    url: str = ""
    mime_type: str = ""
    filename: str = ""
    content: bytes | None = None  # email attachments arrive inline


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message (or an echo of one the business sent)."""

    external_message_id: str
    sender_id: str
    sender_name: str = ""
    sender_email: str = ""
    sender_phone: str = ""
    text: str = ""
    html: str = ""
    subject: str = ""
    media: tuple[MediaRef, ...] = ()
    is_echo: bool = False
    timestamp: datetime | None = None
    reply_to_external_id: str = ""
    references: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status for a message we sent (sent / delivered / read / failed)."""

    external_message_id: str
    status: str
    timestamp: datetime | None = None
    error_code: str = ""
    error: str = ""
    # Messenger's "read"/"delivered" watermarks cover every earlier message.
    watermark: datetime | None = None
    recipient_id: str = ""


@dataclass(frozen=True)
class UnknownEvent:
    """Acknowledged and logged, never processed."""

    description: str


Event = InboundMessage | StatusUpdate | UnknownEvent


@dataclass(frozen=True)
class OutboundRequest:
    """What an adapter needs to send one reply."""

    message_id: int
    ticket_id: int
    ticket_number: str
    recipient_id: str
    text: str
    subject: str = ""
    last_inbound_at: datetime | None = None
    thread_message_ids: tuple[str, ...] = ()  # email: ids for In-Reply-To / References
    outgoing_message_id: str = ""  # email: the Message-ID we assign


@dataclass(frozen=True)
class SendResult:
    external_message_id: str
    http_status: int | None = None
    request_body: dict[str, Any] = field(default_factory=dict)
    response_body: str = ""
    delivered: bool = False  # the channel confirms delivery immediately (web chat)


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes
    content_type: str
    filename: str


class ChannelAdapter(ABC):
    """The interface every channel implements."""

    channel: str
    #: Header names kept with the raw event (lower case); others are dropped.
    kept_headers: tuple[str, ...] = ("content-type", "user-agent")
    #: Whether ``InboundMessage.sender_email`` is vouched for by the channel and may find
    #: an existing customer. False where the sender types it (web chat): never trusted.
    trusts_sender_email: bool = True

    @abstractmethod
    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        """Raise ``SignatureError`` unless the delivery is authentic (constant-time)."""

    def handshake(self, account: ChannelAccount, query: Mapping[str, str]) -> tuple[int, str, str]:
        """Answer a GET subscription check: (status, body, content type)."""
        return 405, "This channel has no GET handshake.", "text/plain"

    def check_well_formed(self, request: WebhookRequest) -> None:
        """Raise ``MalformedPayload`` with a clear message; JSON by default."""
        json_body(request.body)

    def delivery_id(self, request: WebhookRequest) -> str:
        """The natural key of a delivery; a retried delivery has the same body."""
        return hashlib.sha256(request.body).hexdigest()

    @abstractmethod
    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        """Normalise a verified delivery into events."""

    @abstractmethod
    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """Send one reply; raise ``RetryableError`` or ``PermanentError`` on failure."""

    def fetch_media(self, account: ChannelAccount, media: MediaRef) -> FetchedMedia:
        raise PermanentError(f"{self.channel} has no media download.")


# --- helpers shared by adapters ---------------------------------------------------------


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"The body is not UTF-8 ({exc.reason}).") from exc
    except json.JSONDecodeError as exc:
        raise MalformedPayload(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from exc


def hmac_sha256(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def http_timeout() -> float:
    return float(getattr(settings, "CHANNELS_HTTP_TIMEOUT", 10))


def http_call(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One vendor HTTP call with a timeout; failures become Retryable/PermanentError."""
    kwargs.setdefault("timeout", http_timeout())
    try:
        response = requests.request(method, url, **kwargs)  # noqa: S113 - timeout set above
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    outcome = classify_http_status(response.status_code)
    if outcome == AttemptOutcome.SUCCESS:
        return response
    detail = f"HTTP {response.status_code}: {response.text[:500]}"
    error: RetryableError | PermanentError
    if outcome == AttemptOutcome.RETRYABLE:
        error = RetryableError(
            detail, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    else:
        error = PermanentError(detail)
    setattr(error, "http_status", response.status_code)  # noqa: B010
    setattr(error, "response_text", response.text[:2000])  # noqa: B010
    raise error


def epoch_to_datetime(value: Any, *, millis: bool = False) -> datetime | None:
    from datetime import UTC

    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if millis:
        seconds /= 1000.0
    return datetime.fromtimestamp(seconds, tz=UTC)


def monotonic_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


# --- registry ------------------------------------------------------------------------

_registry: dict[str, ChannelAdapter] = {}


def register(adapter: ChannelAdapter) -> ChannelAdapter:
    _registry[adapter.channel] = adapter
    return adapter


def get_adapter(channel: str) -> ChannelAdapter:
    from channels_app.adapters import registry  # noqa: F401 - registers the adapters

    try:
        return _registry[channel]
    except KeyError:
        raise LookupError(f"No adapter for channel {channel!r}.") from None


def registered_channels() -> list[str]:
    from channels_app.adapters import registry  # noqa: F401

    return sorted(_registry)
