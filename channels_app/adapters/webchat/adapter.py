"""Web chat: our embeddable widget. Visitors hold a server-signed session token;
agent replies go out over the Channels layer (websocket) and stay pollable.

A web visitor is anonymous: the name and email typed into the widget are claims, never an
identity. The email travels as ``claimed_email`` in the message metadata (shown to agents
as unverified) and is never used to find a customer; the visitor becomes a guest
customer, linked to a real one only after proving the address (``channels_app.verification``).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage

from channels_app.adapters.base import (
    ChannelAdapter,
    Event,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    SignatureError,
    WebhookRequest,
    json_body,
)
from support.parsing import safe_file_name
from support.redaction import truncate

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount

SESSION_SALT = "channels_app.webchat.session"
SESSION_HEADER = "x-webchat-session"
MAX_TEXT = 5000
#: How much of the first message a ticket's subject holds (after "Web chat: ").
SUBJECT_CHARS = 80
#: The largest message body kept (its raw bytes are stored whole): ``MAX_TEXT`` characters,
#: a client id and the page's URL, even with every character escaped.
WEBCHAT_MESSAGE_MAX_BYTES = 65_536


# --- files a visitor sends (``api-webchat-upload``) -------------------------------------
#
# The only types a visitor may send, decided by the file name's extension and checked
# against the file's first bytes: pictures a browser shows safely, PDF and plain text.
# Never SVG or HTML (they carry script), never executables or archives.
#: extension -> (content type, attachment kind, magic prefixes; () = text, no NUL)
UPLOAD_TYPES: dict[str, tuple[str, str, tuple[bytes, ...]]] = {
    "jpg": ("image/jpeg", "image", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", "image", (b"\xff\xd8\xff",)),
    "png": ("image/png", "image", (b"\x89PNG\r\n\x1a\n",)),
    "gif": ("image/gif", "image", (b"GIF87a", b"GIF89a")),
    "webp": ("image/webp", "image", (b"RIFF",)),
    "pdf": ("application/pdf", "document", (b"%PDF-",)),
    "txt": ("text/plain", "document", ()),
}
#: Where a visitor's file is kept from its upload on; the event names it, and the drain
#: only reads keys under the sending visitor's own prefix (``upload_prefix``).
UPLOAD_ROOT = "webchat-uploads"


def upload_type(filename: str, head: bytes) -> tuple[str, str] | None:
    """(content type, attachment kind) of a visitor's file, from its name's extension,
    when its first bytes match that type; None for any other file."""
    _, dot, ext = filename.rpartition(".")
    known = UPLOAD_TYPES.get(ext.lower()) if dot else None
    if known is None:
        return None
    content_type, kind, magics = known
    if magics:
        if not head.startswith(magics):
            return None
        if ext.lower() == "webp" and head[8:12] != b"WEBP":
            return None
    elif b"\x00" in head:
        return None  # "text" with NUL bytes is a binary renamed .txt
    return content_type, kind


def upload_prefix(account_id: int, visitor_id: str) -> str:
    return f"{UPLOAD_ROOT}/{account_id}/{visitor_id}/"


def upload_folder(account_id: int, visitor_id: str, client_id: str) -> str:
    """The folder of one message's file, under the visitor's own prefix: a hash of its
    client id (any characters the widget chose stay out of the path)."""
    folder = hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{upload_prefix(account_id, visitor_id)}{folder}/"


def upload_key(account_id: int, visitor_id: str, client_id: str, filename: str) -> str:
    """The storage name of a visitor's file: in its message's own folder."""
    return f"{upload_folder(account_id, visitor_id, client_id)}{filename}"


def client_id_problem(client_id: object) -> str:
    """What is wrong with a visitor's ``client_id`` ("" when nothing): the one rule of a
    message and of a file's upload, checked before anything is stored. It becomes the
    delivery's key, the message's id and a part of a stored file's name (text columns,
    storage keys); the widget makes it from letters, digits and dashes."""
    if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64:
        return "'client_id' is required (8 to 64 characters)."
    if not (client_id.isascii() and client_id.isprintable()):
        return "'client_id' must be printable ASCII characters."
    return ""


def event_staged_names(account_id: int, external_id: str, body: bytes) -> tuple[str, ...]:
    """The staged upload a web chat delivery's raw body names, when it is the delivery's
    own: in the folder its natural key (``<visitor>:<client id>``) gives. A body posted
    straight to the webhook naming another message's file (another visitor's, or another
    of the same visitor's) names none here, so deleting it with this delivery (an
    erasure, the retention purge, a discard) never deletes a file another event needs."""
    visitor, sep, client_id = external_id.partition(":")
    if not sep or not visitor.startswith("v_") or b'"file"' not in body:
        return ()
    try:
        data = json_body(body)
    except MalformedPayload:
        return ()
    file = data.get("file") if isinstance(data, dict) else None
    key = file.get("key") if isinstance(file, dict) else None
    folder = upload_folder(account_id, visitor, client_id)
    if not isinstance(key, str) or not key.startswith(folder):
        return ()
    name = key[len(folder) :]
    return (key,) if name and "/" not in name and name not in (".", "..") else ()


def visitor_group(visitor_id: str) -> str:
    return f"webchat-{visitor_id}"


# Every web chat message carries its visitor in its channel id, ``<visitor id>:<rest>``:
# ``<visitor>:<client id>`` for the visitor's messages, ``<visitor>:out-<message id>`` for
# the replies sent to it. A visitor's widget shows exactly the messages with its prefix,
# wherever a merge moved them (``selectors.webchat_messages``).


def visitor_send_bucket(visitor_id: str) -> str:
    """The rate-limit bucket of a visitor's messages, over the socket and over HTTP alike
    (``WEBCHAT_WS_MESSAGES_PER_MINUTE``)."""
    return f"webchat-ws:{visitor_id}"


def visitor_send_wait(visitor_id: str, ip: str) -> float | None:
    """Count one visitor message, over the socket or over HTTP; the seconds to wait when it
    is over the session's limit (``WEBCHAT_WS_MESSAGES_PER_MINUTE``) or its address's
    (``WEBCHAT_MESSAGES_PER_IP_PER_MINUTE``), else None. The address limit matters because
    sessions are free: an address may open 60 a minute, each with its own session limit."""
    from support.throttling import hit

    wait = hit(visitor_send_bucket(visitor_id), int(settings.WEBCHAT_WS_MESSAGES_PER_MINUTE))
    if wait is not None:
        return wait
    return hit(f"webchat-send-ip:{ip}", int(settings.WEBCHAT_MESSAGES_PER_IP_PER_MINUTE))


def visitor_message_prefix(visitor_id: str) -> str:
    return f"{visitor_id}:"


def message_visitor(channel_message_id: str | None) -> str:
    """The visitor a web chat message's channel id names ("" if none)."""
    visitor, sep, _ = (channel_message_id or "").partition(":")
    return visitor if sep and visitor.startswith("v_") else ""


class SessionExpired(SignatureError):
    """A genuine session past ``WEBCHAT_SESSION_TTL_SECONDS``: 401, start a new one."""

    def __init__(self) -> None:
        super().__init__("This web chat session has expired; start a new chat session.", status=401)


def session_ttl() -> int:
    """Seconds a session token is valid (``WEBCHAT_SESSION_TTL_SECONDS``)."""
    return int(settings.WEBCHAT_SESSION_TTL_SECONDS)


def session_issue(account: ChannelAccount, *, name: str, email: str) -> dict[str, Any]:
    """A new visitor id and its signed token. ``signing.dumps`` stamps the issue time
    (``TimestampSigner``), which :func:`session_read` checks against the TTL. The email is
    only what the visitor typed: a claim, kept for agents to see, never trusted."""
    visitor_id = "v_" + secrets.token_hex(12)
    token = signing.dumps(
        {"a": account.pk, "v": visitor_id, "n": name[:200], "e": email[:254]}, salt=SESSION_SALT
    )
    return {"visitor_id": visitor_id, "session": token, "expires_in": session_ttl()}


def session_read(
    account: ChannelAccount, token: str, *, check_expiry: bool = True
) -> dict[str, Any]:
    """The session's claims; ``SignatureError`` when missing (401), expired (401), forged
    or for another widget (403). ``check_expiry=False`` only for deliveries already
    accepted while the session was valid (processing may run later)."""
    if not token:
        raise SignatureError("Missing web chat session.", status=401)
    try:
        claims = signing.loads(
            token, salt=SESSION_SALT, max_age=session_ttl() if check_expiry else None
        )
    except signing.SignatureExpired:
        raise SessionExpired() from None
    except signing.BadSignature:
        raise SignatureError("Invalid web chat session.", status=403) from None
    if not isinstance(claims, dict) or claims.get("a") != account.pk:
        raise SignatureError("This session belongs to another widget.", status=403)
    return claims


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _subject(text: str) -> str:
    """ "Web chat: " and the message's start, cut at a word's end and never inside a
    personal detail (``support.redaction.truncate``): the subject reaches model providers
    (routing, drafts), redacted, and a half e-mail address would not be recognised."""
    start = truncate(text, SUBJECT_CHARS)
    return f"Web chat: {start}" if start else "Web chat"


def _file_name(data: dict[str, Any]) -> str:
    file = data.get("file")
    return str(file.get("name", "file")) if isinstance(file, dict) else "file"


def _upload_media(
    account: ChannelAccount, visitor_id: str, file: dict[str, Any]
) -> tuple[tuple[MediaRef, ...], str]:
    """The stored upload an event names, as the message's one file; or (), and the name to
    report, when it is missing. Only a key under the sending visitor's own prefix is read:
    a body posted straight to the webhook cannot name another visitor's file (or any
    other stored object). A storage error other than "not there" propagates, so the drain
    retries the event rather than losing the file."""
    key = str(file.get("key", ""))
    if (
        not key.startswith(upload_prefix(account.pk, visitor_id))
        or ".." in key.split("/")
        or not default_storage.exists(key)
    ):
        return (), (str(file.get("name", "")) or "file")[:255]
    # The name as the visitor gave it (storage may have changed spaces and such in the
    # key), as long as its extension is the one checked at upload: a message posted to the
    # webhook could otherwise call a picture "page.html".
    stored = key.rpartition("/")[2] or "file"
    given = safe_file_name(file.get("name"), fallback=stored)
    name = given if _extension(given) == _extension(stored) else stored
    with default_storage.open(key, "rb") as handle:
        content = handle.read()
    found = upload_type(name, content[:16])
    content_type, kind = found or ("application/octet-stream", "other")
    media = MediaRef(
        kind=kind, mime_type=content_type, filename=name, content=content, staged_name=key
    )
    return (media,), ""


class WebchatAdapter(ChannelAdapter):
    channel = "webchat"
    kept_headers = ("content-type", "user-agent", SESSION_HEADER)
    trusts_sender_email = False  # anyone can type any address into the widget
    # The widget shows a message id once (static/webchat/widget.js keeps the ids it saw).
    deduplicates_sends = True
    # Files: the widget opens each through the visitor's own session
    # (``api-webchat-file``); as many and as big as an e-mail reply takes.
    reply_limits = ReplyLimits(
        files=True, files_max_count=10, file_max_bytes=20_000_000, files_max_total_bytes=20_000_000
    )

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        session_read(account, request.header(SESSION_HEADER))

    def check_well_formed(self, request: WebhookRequest) -> None:
        data = json_body(request.body)
        if not isinstance(data, dict):
            raise MalformedPayload("Expected a JSON object.")
        text = data.get("text")
        file = data.get("file")
        if file is not None and not (isinstance(file, dict) and isinstance(file.get("key"), str)):
            raise MalformedPayload("'file' must be an object naming a stored upload.")
        if file is not None and text is None:
            text = ""  # a file may come alone
        if not isinstance(text, str) or (file is None and not text.strip()):
            raise MalformedPayload("'text' is required and must be a non-empty string.")
        if len(text) > MAX_TEXT:
            raise MalformedPayload(f"'text' is longer than {MAX_TEXT} characters.")
        problem = client_id_problem(data.get("client_id"))
        if problem:
            raise MalformedPayload(problem)

    def delivery_id(self, request: WebhookRequest) -> str:
        # Runs right after verify(): the signature (and expiry) were checked there.
        claims = signing.loads(request.header(SESSION_HEADER), salt=SESSION_SALT)
        return f"{claims['v']}:{json_body(request.body)['client_id']}"

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        # Accepted while the session was valid; processing (or a re-drive) may come later.
        claims = session_read(account, request.header(SESSION_HEADER), check_expiry=False)
        data = json_body(request.body)
        metadata: dict[str, Any] = {"page_url": str(data.get("page_url", ""))[:500]}
        if claims.get("e"):
            metadata["claimed_email"] = str(claims["e"])[:254]
        text = str(data.get("text") or "").strip()
        media: tuple[MediaRef, ...] = ()
        if isinstance(data.get("file"), dict):
            media, missing = _upload_media(account, claims["v"], data["file"])
            if missing:
                metadata["file_missing"] = missing
                text = text or f"(a file that could not be found: {missing})"
        return [
            InboundMessage(
                external_message_id=f"{claims['v']}:{data['client_id']}",
                sender_id=claims["v"],
                sender_name=claims.get("n", ""),
                sender_email="",  # a claim, not an identity: see the module docstring
                text=text,
                subject=_subject(text or _file_name(data)),
                metadata=metadata,
                media=media,
            )
        ]

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        layer = get_channel_layer()
        payload: dict[str, Any] = {
            "type": "webchat.message",
            "message": {
                "id": outbound.message_id,
                "from": "agent",
                "text": outbound.text,
                # the widget fetches each with the visitor's session (api-webchat-file)
                "files": [
                    {
                        "id": f.attachment_id,
                        "name": f.filename,
                        "type": f.content_type,
                        "size": f.size,
                    }
                    for f in outbound.files
                ],
            },
        }
        if layer is not None:
            async_to_sync(layer.group_send)(visitor_group(outbound.recipient_id), payload)
        return SendResult(
            external_message_id=(
                f"{visitor_message_prefix(outbound.recipient_id)}out-{outbound.message_id}"
            ),
            request_body=payload["message"],
            delivered=True,
        )
