"""The channel adapter interface, the normalised events and the registry.

An adapter verifies a webhook delivery, checks it is well formed, parses it into
normalised events, sends replies and fetches media. Vendor HTTP lives only in adapters;
every call has a timeout and failures map to ``RetryableError`` / ``PermanentError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

from support.delivery.registry import ANSWER_TOO_LARGE, possibly_sent, request_possibly_sent
from support.errors import PermanentError, RetryableError
from support.models import AttemptOutcome
from support.outbound import (
    AnswerTooLarge,
    body_read_bounded,
    classify_http_status,
    outbound_headers,
    response_read_bounded,
    retry_after_from_headers,
)
from support.parsing import UnreadableJson, bounded_key, json_loads, without_nul

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


# --- what a channel sends, made storable at one place ------------------------------------
#
# Every string in an ``InboundMessage`` (and its ``MediaRef``s) or a ``StatusUpdate`` came
# from outside: whatever the adapter's ``parse`` passes, the event keeps it storable.
# PostgreSQL text and jsonb refuse NUL: each NUL becomes U+FFFD (as call intake does), so
# the message is kept, never failed for ever in the drain. Ids are bounded to the id
# columns (255) with :func:`bounded_id`; the sender's name, e-mail address and phone are
# cut to the customer's columns. Attachment file names are made safe where they are
# stored (``tickets.services``, ``support.parsing.safe_file_name``).

ID_MAX = 255  # Message.channel_message_id, ChannelIdentity.external_id
SENDER_NAME_MAX = 200  # Customer.name, ChannelIdentity.display_name
SENDER_EMAIL_MAX = 254  # Customer.email
SENDER_PHONE_MAX = 32  # Customer.phone


def bounded_id(value: str) -> str:
    """An external id that fits the id columns: as it is up to ``ID_MAX`` characters,
    else its beginning and ``#<sha256 of the whole>`` (a ``<…>`` Message-ID keeps its
    closing bracket). The same long id always gives the same value, so a reply that
    names it (In-Reply-To, References) still finds its thread."""
    return bounded_key(value, ID_MAX)


def _strings_without_nul(event: object) -> None:
    """Replace NUL in every string, string tuple and dict field of a frozen dataclass."""
    for item in fields(event):  # type: ignore[arg-type]
        value = getattr(event, item.name)
        if isinstance(value, str | dict):
            object.__setattr__(event, item.name, without_nul(value))
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            object.__setattr__(event, item.name, tuple(without_nul(v) for v in value))


@dataclass(frozen=True)
class MediaRef:
    kind: str  # tickets.models.AttachmentKind value
    media_id: str = ""
    url: str = ""
    mime_type: str = ""
    filename: str = ""
    content: bytes | None = None  # email attachments arrive inline
    #: The storage name of a copy our own intake kept (a web chat visitor's upload): the
    #: attachment gets its own copy, and this one is deleted once that is committed.
    staged_name: str = ""

    def __post_init__(self) -> None:
        _strings_without_nul(self)


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

    def __post_init__(self) -> None:
        _strings_without_nul(self)
        bounded = {
            "external_message_id": bounded_id(self.external_message_id),
            "sender_id": bounded_id(self.sender_id),
            "reply_to_external_id": bounded_id(self.reply_to_external_id),
            "references": tuple(bounded_id(ref) for ref in self.references),
            "sender_name": self.sender_name[:SENDER_NAME_MAX],
            "sender_email": self.sender_email[:SENDER_EMAIL_MAX],
            "sender_phone": self.sender_phone[:SENDER_PHONE_MAX],
        }
        for name, value in bounded.items():
            object.__setattr__(self, name, value)


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
    # Set by channels that report each status as an event of its own (SendGrid's Event
    # Webhook): the provider's id of the event (applied once, recorded as a
    # ``SentMessageEvent``), our ``Message`` id when the channel echoes it back (then
    # found by it, not by ``external_message_id``) and the provider's event name.
    event_id: str = ""
    message_ref: int | None = None
    event: str = ""

    def __post_init__(self) -> None:
        _strings_without_nul(self)


@dataclass(frozen=True)
class UnknownEvent:
    """Acknowledged and logged, never processed."""

    description: str


Event = InboundMessage | StatusUpdate | UnknownEvent


@dataclass(frozen=True)
class OutboundFile:
    """A file an agent attached to a reply: an ``Attachment`` of the outgoing message."""

    attachment_id: int
    filename: str
    content_type: str
    size: int
    kind: str  # an ``AttachmentKind`` value: image, audio, video, document, other
    #: The stored bytes (read from the project's storage when called).
    read: Callable[[], bytes]
    #: A URL the provider can fetch for a few minutes (a signed S3 URL), or "" where files
    #: are not reachable from outside (local storage): channels that take media only by
    #: URL cannot send the file then.
    public_url: Callable[[], str]


@dataclass(frozen=True)
class ReplyLimits:
    """What one reply on a channel may carry, as the provider accepts it. Checked when an
    agent sends (a refusal naming the limit) and again before the send."""

    #: The longest text the provider takes in one message (characters); None: no limit of
    #: the channel's own (the project's message limit applies).
    text_max_chars: int | None = None
    #: Whether a reply may carry files at all.
    files: bool = False
    files_max_count: int = 0
    file_max_bytes: int = 0
    #: Content types accepted: exact ("application/pdf") or a prefix ending in "/"
    #: ("image/"). Empty with ``files``: any type.
    file_types: tuple[str, ...] = ()
    #: The files of one reply together (bytes); 0: no total of the channel's own (e-mail:
    #: SendGrid's 30 MB a message, after base64).
    files_max_total_bytes: int = 0
    #: The largest file of a type, where the provider's limit depends on it: (type, bytes)
    #: pairs, the type exact ("application/pdf") or a prefix ending in "/" ("image/"); the
    #: first match wins, ``file_max_bytes`` for the others (WhatsApp: images 5 MB, video
    #: and audio 16 MB, the others, documents, 100 MB). Read it with ``max_bytes_for``.
    file_max_bytes_by_type: tuple[tuple[str, int], ...] = ()
    #: What the files ``file_max_bytes_by_type`` does not name are, in words ("documents").
    other_files_word: str = "other files"
    #: The longest text in UTF-8 bytes, where the provider counts bytes (Instagram: 1,000):
    #: emoji and letters outside ASCII take 2-4 bytes each. None: not counted in bytes.
    text_max_bytes: int | None = None
    #: Why files are refused, in words, where it is not the channel's rule but the
    #: account's (an X account connected without ``media.write``); "": the channel's.
    files_refusal: str = ""

    def max_bytes_for(self, content_type: str) -> int:
        """The largest file of ``content_type`` (0: no limit of the channel's own)."""
        return self.rule_for(content_type)[1]

    def rule_for(self, content_type: str) -> tuple[str, int]:
        """The ``file_max_bytes_by_type`` entry that applies to ``content_type``, else
        ``("", file_max_bytes)``."""
        kind = content_type.split(";", 1)[0].strip().lower()
        for prefix, size in self.file_max_bytes_by_type:
            if kind.startswith(prefix) if prefix.endswith("/") else kind == prefix:
                return prefix, size
        return "", self.file_max_bytes


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
    # The delivery's idempotency key, for a channel whose API drops a repeated send by it
    # (none of the HTTP channels has one today: see ``ChannelAdapter.deduplicates_sends``).
    idempotency_key: str = ""
    #: Files the agent attached, in the order attached (within the channel's ``ReplyLimits``).
    files: tuple[OutboundFile, ...] = ()


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
    #: Hosts media may be downloaded from (a name also allows its subdomains); more per
    #: channel with ``CHANNELS_MEDIA_EXTRA_HOSTS``. Empty: no downloads by URL.
    media_hosts: tuple[str, ...] = ()
    #: Whether a repeated send of the same reply is dropped on the way (an idempotency key
    #: the API honours, an id the client checks). False: a send repeated after a worker
    #: died mid-call may reach the customer twice, and the engine counts it
    #: (``Delivery.possible_duplicate``). docs/channels.md lists each channel.
    deduplicates_sends: bool = False
    #: What one reply may carry on this channel (text length, files).
    reply_limits: ReplyLimits = ReplyLimits()

    def reply_limits_for(self, account: ChannelAccount | None) -> ReplyLimits:
        """What one reply through ``account`` may carry (None: the account is not known):
        the channel's ``reply_limits``, unless the account narrows them (an X account
        connected without permission to upload media). Read by the compose-time check and
        by the check before the send."""
        return self.reply_limits

    def reply_window_open(self, last_inbound_at: datetime | None) -> bool:
        """Whether a free-form message may be sent now, the customer having last written
        at ``last_inbound_at`` (None: never). True unless the channel limits it (Meta's
        24-hour window on WhatsApp, Messenger and Instagram: ``MetaAdapter``). Asked before
        a message nobody typed, such as the satisfaction survey, is written: one that could
        only fail is not."""
        return True

    @abstractmethod
    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        """Raise ``SignatureError`` unless the delivery is authentic (constant-time)."""

    def handshake(self, account: ChannelAccount, query: Mapping[str, str]) -> tuple[int, str, str]:
        """Answer a GET subscription check: (status, body, content type)."""
        return 405, "This channel has no GET handshake.", "text/plain"

    def check_well_formed(self, request: WebhookRequest) -> None:
        """Raise ``MalformedPayload`` with a clear message; JSON by default."""
        json_body(request.body)

    def addressed_to(self, request: WebhookRequest) -> frozenset[str]:
        """The platform ids of the accounts a delivery is for, as its payload names them
        (compared with ``ChannelAccount.external_id``): several accounts of one app share
        its secret, so the signature alone cannot tell them apart. Read from a body not
        yet verified and never trusted alone; never raises (an odd body names what can be
        read of it, often nothing). Default: names none."""
        return frozenset()

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
    """The JSON of a webhook body (``support.parsing.json_loads``), else ``MalformedPayload``."""
    try:
        return json_loads(body)
    except UnreadableJson as exc:
        raise MalformedPayload(str(exc)) from None


def json_body_or_none(body: bytes) -> Any:
    """The JSON of a body, or None where it is not JSON (``json_body`` without raising)."""
    try:
        return json_loads(body)
    except UnreadableJson:
        return None


def platform_id(value: Any) -> str:
    """An account id as a payload gives it (a string, or a number), else "" (a bool, an
    object, a list: not an id)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def dict_items(container: Any, key: str) -> list[dict[str, Any]]:
    """The objects in ``container[key]`` where ``container`` is an object and that is a
    list (anything else in it skipped), else none: for reading odd payloads without
    raising."""
    items = container.get(key) if isinstance(container, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def hmac_sha256(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def http_timeout() -> float:
    return float(getattr(settings, "CHANNELS_HTTP_TIMEOUT", 10))


#: The most of a vendor API's answer ``http_call`` reads: the Graph API, X and SendGrid
#: answer a send, an upload or a token request with a small JSON object (a few hundred
#: bytes); 1 MiB leaves room for an error page and refuses an answer that would fill memory.
ANSWER_MAX_BYTES = 1024 * 1024


#: An adapter's reading of a vendor's error answer (a non-2xx response, its body read):
#: the error it means, or ``None`` to leave it to the HTTP status (:func:`_raise_for_status`).
ErrorAnswer = Callable[[requests.Response], RetryableError | PermanentError | None]


def http_call(
    method: str, url: str, *, error_answer: ErrorAnswer | None = None, **kwargs: Any
) -> requests.Response:
    """One vendor HTTP call with a timeout; failures become Retryable/PermanentError.

    The answer is read whole within the timeout and up to ``ANSWER_MAX_BYTES``
    (``support.outbound.body_read_bounded``): a trickle of bytes is a timeout (retryable),
    a larger answer a permanent failure (what a malformed answer is), never read whole;
    but a POST answered 2xx was taken whatever its body does (:func:`_taken_unread`).
    An error answer is classified by its HTTP status, unless ``error_answer`` (a vendor
    whose error body says more than its status: the Graph API's ``error.code``,
    ``channels_app.adapters.meta.common``) reads it otherwise."""
    kwargs.setdefault("timeout", http_timeout())
    kwargs["headers"] = outbound_headers(kwargs.get("headers"))
    kwargs["stream"] = True
    posting = method.upper() == "POST"
    try:
        response = requests.request(method, url, **kwargs)  # noqa: S113 - timeout set above
    except _BROKEN as exc:
        raise _call_failed(exc, maybe_sent=posting and request_possibly_sent(exc)) from exc
    taken = posting and 200 <= response.status_code < 300
    try:
        response_read_bounded(
            response, max_bytes=ANSWER_MAX_BYTES, seconds=_deadline(kwargs["timeout"])
        )
    except _BROKEN as exc:  # the answer had begun: the request was taken
        if taken:
            return _taken_unread(response, exc)
        raise _call_failed(exc, maybe_sent=posting) from exc
    except AnswerTooLarge as exc:
        if taken:
            return _taken_unread(response, exc)
        raise PermanentError(
            f"The answer was refused: {exc} (not read).",
            error_code=ANSWER_TOO_LARGE,
            http_status=exc.response.status_code if exc.response is not None else None,
        ) from exc
    _raise_for_status(response, error_answer)
    return response


def _taken_unread(response: requests.Response, exc: Exception) -> requests.Response:
    """A POST the other side took (2xx) whose answer broke off, trickled past the deadline
    or was too large: taken is sent, so the response is returned with a body that only
    says why it was not read (a send then names no message id: a success, never a retry
    that sends a second copy; review 2026-12-07), and ``answer_unread`` says it too (an
    upload, whose id is in the answer, is retried by ``ReplyParts.call``)."""
    unread = f"{type(exc).__name__}: {exc}"
    # what the attempt's record shows as the answer (no JSON: no message id is read)
    response._content = f"(the answer was not read: {unread})".encode()
    response._content_consumed = True  # type: ignore[attr-defined]
    response.answer_unread = unread  # type: ignore[attr-defined]
    return response


#: A call that failed on the way: retried (``RetryableError``).
_BROKEN = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


def _call_failed(exc: Exception, *, maybe_sent: bool) -> RetryableError:
    """A retryable failure; one whose POST may have reached the other side (``maybe_sent``)
    says so and is marked (``support.delivery.registry.possibly_sent``), so a reply sent
    again after it is counted as a possible duplicate (docs/channels.md, "Outbound")."""
    error = RetryableError(f"{type(exc).__name__}: {exc}")
    if not maybe_sent:
        return error
    error.args = (f"{error} (the request was sent: the other side may have taken it)",)
    return possibly_sent(error)


def _deadline(timeout: float | tuple[float, float]) -> float:
    """The whole read's deadline from a requests timeout (a (connect, read) pair: read)."""
    return float(timeout[1] if isinstance(timeout, tuple) else timeout)


def _raise_for_status(response: requests.Response, error_answer: ErrorAnswer | None = None) -> None:
    outcome = classify_http_status(response.status_code)
    if outcome == AttemptOutcome.SUCCESS:
        return
    if error_answer is not None:
        error = error_answer(response)
        if error is not None:
            raise error
    # the provider's own words (never the raw body: that is the attempt's answer)
    words = provider_message(response.text)
    detail = f"HTTP {response.status_code}: {words}" if words else f"HTTP {response.status_code}"
    status, text = response.status_code, response.text[:2000]
    if outcome == AttemptOutcome.RETRYABLE:
        raise RetryableError(
            detail,
            # Retry-After, else a rate limit's reset time (X, SendGrid)
            retry_after=retry_after_from_headers(response.headers),
            http_status=status,
            response_text=text,
        )
    raise PermanentError(detail, http_status=status, response_text=text)


#: How much of a provider's own words an error message keeps.
PROVIDER_WORDS_MAX = 300
#: What looks like a credential in a provider's words (an ``access_token=`` parameter, a
#: bearer token, a long opaque string such as a Graph API token): never shown.
_SECRET_RE = re.compile(
    r"(?i)(access_token=|bearer\s+)\S+|\b[A-Za-z0-9_\-]{40,}\b",
)


def provider_words(text: str) -> str:
    """A provider's words for an error message: on one line, any credential hidden, at
    most ``PROVIDER_WORDS_MAX`` characters."""
    words = " ".join(str(text).split())
    words = _SECRET_RE.sub(lambda m: f"{m.group(1) or ''}[hidden]", words)
    if len(words) > PROVIDER_WORDS_MAX:
        words = words[: PROVIDER_WORDS_MAX - 1].rstrip() + "…"
    return words


def provider_message(text: str) -> str:
    """The provider's own words in an error answer: the Graph API's ``error`` object
    (``error_user_msg``, else ``error_data.details``, the WhatsApp Cloud API's sentence,
    else ``message``), X's ``detail`` or ``errors[0].message``; else the start of the body
    (:func:`provider_words`: bounded, no credential)."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        return provider_words(text)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            data = error.get("error_data")
            details = data.get("details") if isinstance(data, dict) else None
            words = error.get("error_user_msg") or details or error.get("message")
            if words and isinstance(words, str):
                return provider_words(words)
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            words = errors[0].get("message") or errors[0].get("detail")
            if words:
                return provider_words(str(words))
        if body.get("detail") or body.get("title"):
            return provider_words(str(body.get("detail") or body.get("title")))
    return provider_words(text)


# --- media downloads -------------------------------------------------------------------

MEDIA_MAX_REDIRECTS = 3
#: The whole read of one media file (up to CHANNELS_MEDIA_MAX_BYTES, 25 MiB by default):
#: longer than a vendor call's timeout (25 MiB in 90 s is under 300 KB/s), shorter than
#: the download task's soft time limit (120 s), so a trickle is a retryable failure
#: instead of a task killed.
MEDIA_READ_SECONDS = 90.0
_REDIRECTS = (301, 302, 303, 307, 308)


def media_max_bytes() -> int:
    return int(getattr(settings, "CHANNELS_MEDIA_MAX_BYTES", 26_214_400))


def media_hosts(adapter: ChannelAdapter) -> tuple[str, ...]:
    """The adapter's media hosts plus ``CHANNELS_MEDIA_EXTRA_HOSTS`` entries
    (``<channel>:<host>``) for its channel."""
    extra = [
        entry.split(":", 1)[1].strip().lower()
        for entry in getattr(settings, "CHANNELS_MEDIA_EXTRA_HOSTS", [])
        if entry.split(":", 1)[0].strip() == adapter.channel and ":" in entry
    ]
    return (*adapter.media_hosts, *extra)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return bool(host) and any(host == name or host.endswith("." + name) for name in allowed)


def media_download(
    url: str, *, allowed_hosts: tuple[str, ...], headers: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """GET a media file: (content, content type).

    Only ``https`` URLs on ``allowed_hosts``, redirects included (each hop is checked; a
    hop to another host drops the ``Authorization`` header, one outside the list is
    refused); the body is streamed and refused past ``CHANNELS_MEDIA_MAX_BYTES`` (also on
    a ``Content-Length`` that says so), never read whole into memory first.
    """
    limit = media_max_bytes()
    sent = dict(headers or {})
    for _ in range(MEDIA_MAX_REDIRECTS + 1):
        parsed = urlsplit(url)
        if parsed.scheme != "https" or not host_allowed(parsed.hostname or "", allowed_hosts):
            raise PermanentError(
                f"Media URL host {parsed.hostname or '?'!r} ({parsed.scheme or 'no'} scheme) "
                "is not on this channel's allow-list (https only)."
            )
        try:
            response = requests.get(
                url,
                headers=outbound_headers(sent),
                timeout=http_timeout(),
                stream=True,
                allow_redirects=False,
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
        with response:
            if response.status_code in _REDIRECTS and response.headers.get("Location"):
                target = urljoin(url, response.headers["Location"])
                if urlsplit(target).hostname != parsed.hostname:
                    sent.pop("Authorization", None)
                url = target
                continue
            if classify_http_status(response.status_code) != AttemptOutcome.SUCCESS:
                _error_answer_read(response)
                _raise_for_status(response)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            return _read_capped(response, limit), content_type
    raise PermanentError(f"Media download: more than {MEDIA_MAX_REDIRECTS} redirects.")


def _error_answer_read(response: requests.Response) -> None:
    """An error answer's body, for the error's detail: bounded as ``http_call``'s (the
    status is the error; an answer too large or too slow to read leaves the detail empty)."""
    try:
        response_read_bounded(response, max_bytes=ANSWER_MAX_BYTES, seconds=http_timeout())
    except requests.RequestException:
        response._content = b""


def _read_capped(response: requests.Response, limit: int) -> bytes:
    """The media body (``support.outbound.body_read_bounded``): past ``limit`` (or a
    ``Content-Length`` over it) permanent, a stalled or broken stream or one slower than
    ``MEDIA_READ_SECONDS`` in all retryable."""
    try:
        return body_read_bounded(response, max_bytes=limit, seconds=MEDIA_READ_SECONDS)
    except AnswerTooLarge:
        raise PermanentError(
            f"Media larger than {limit} bytes (CHANNELS_MEDIA_MAX_BYTES)."
        ) from None
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc


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
