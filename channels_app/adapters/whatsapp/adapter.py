"""WhatsApp Cloud API: webhooks in (messages, statuses), ``/messages`` out."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings

from channels_app.adapters.base import (
    Event,
    FetchedMedia,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundFile,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    StatusUpdate,
    UnknownEvent,
    WebhookRequest,
    dict_items,
    epoch_to_datetime,
    json_body,
    json_body_or_none,
    media_download,
    media_hosts,
    platform_id,
)
from channels_app.adapters.meta.common import MetaAdapter, graph_url
from channels_app.adapters.parts import (
    PartRequest,
    ReplyParts,
    file_summary,
    files_check,
)
from support.errors import PermanentError

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount

MEDIA_TYPES = {
    "image": "image",
    "audio": "audio",
    "voice": "audio",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
}
WINDOW_CLOSED_CODE = "whatsapp_window_closed"

# What the Cloud API takes (its "Supported media types"): the message type each content
# type goes as, and the largest file of that type (decimal MB, as documented).
MB = 1_000_000
IMAGE_TYPES = ("image/jpeg", "image/png")
VIDEO_TYPES = ("video/mp4", "video/3gpp")
AUDIO_TYPES = ("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg")
DOCUMENT_TYPES = (
    "text/plain",
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
FILES_MAX = 10
# An uploaded media id lives 30 days at WhatsApp; reused by a retry for less than that.
MEDIA_KEPT = timedelta(days=29)


def message_type(content_type: str) -> str:
    """The Cloud API message type a file goes as: image, video, audio or document."""
    value = content_type.split(";")[0].strip().lower()
    if value in IMAGE_TYPES:
        return "image"
    if value in VIDEO_TYPES:
        return "video"
    if value in AUDIO_TYPES:
        return "audio"
    return "document"


class WhatsAppAdapter(MetaAdapter):
    channel = "whatsapp"
    # The Graph API answers a media id with a lookaside.fbsbx.com URL.
    media_hosts: tuple[str, ...] = ("fbsbx.com", "whatsapp.net")
    # Cloud API text message body: at most 4,096 characters (docs/channels.md, "What a
    # reply may carry").
    # Files: images up to 5 MB, video and audio up to 16 MB, documents up to 100 MB (the
    # compose-time check and the check before the send both read these).
    reply_limits = ReplyLimits(
        text_max_chars=4096,
        files=True,
        files_max_count=FILES_MAX,
        file_max_bytes=100 * MB,
        file_max_bytes_by_type=(("image/", 5 * MB), ("video/", 16 * MB), ("audio/", 16 * MB)),
        other_files_word="documents",
        file_types=(*IMAGE_TYPES, *VIDEO_TYPES, *AUDIO_TYPES, *DOCUMENT_TYPES),
    )

    def check_well_formed(self, request: WebhookRequest) -> None:
        data = json_body(request.body)
        if not isinstance(data, dict) or not isinstance(data.get("entry", []), list):
            raise MalformedPayload("Expected a JSON object with an 'entry' list.")

    def addressed_to(self, request: WebhookRequest) -> frozenset[str]:
        """The ``phone_number_id`` of every change (``entry[].changes[].value.metadata``):
        one WhatsApp Business app signs for all its numbers with one app secret."""
        ids: set[str] = set()
        for entry in dict_items(json_body_or_none(request.body), "entry"):
            for change in dict_items(entry, "changes"):
                value = change.get("value")
                metadata = value.get("metadata") if isinstance(value, dict) else None
                if isinstance(metadata, dict):
                    ids.add(platform_id(metadata.get("phone_number_id")))
        return frozenset(ids - {""})

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        data = json_body(request.body)
        events: list[Event] = []
        if data.get("object") != "whatsapp_business_account":
            return [UnknownEvent(f"object={data.get('object')!r}")]
        for entry in data.get("entry", []):
            for change in entry.get("changes", []):
                if change.get("field") != "messages":
                    events.append(UnknownEvent(f"field={change.get('field')!r}"))
                    continue
                value = change.get("value", {})
                names = {
                    c.get("wa_id", ""): c.get("profile", {}).get("name", "")
                    for c in value.get("contacts", [])
                }
                for message in value.get("messages", []):
                    events.append(self._message(message, names))
                for status in value.get("statuses", []):
                    events.append(self._status(status))
        return events

    def _message(self, m: dict[str, Any], names: dict[str, str]) -> Event:
        kind = m.get("type", "")
        sender = m.get("from", "")
        text = ""
        media: list[MediaRef] = []
        meta: dict[str, Any] = {"whatsapp_type": kind}
        if kind == "text":
            text = m.get("text", {}).get("body", "")
        elif kind in MEDIA_TYPES:
            part = m.get(kind, {})
            text = part.get("caption", "")
            media.append(
                MediaRef(
                    kind=MEDIA_TYPES[kind],
                    media_id=part.get("id", ""),
                    mime_type=part.get("mime_type", ""),
                    filename=part.get("filename", "") or f"{kind}-{part.get('id', '')}",
                )
            )
        elif kind == "location":
            loc = m.get("location", {})
            meta["location"] = loc
            label = " ".join(x for x in (loc.get("name", ""), loc.get("address", "")) if x)
            text = f"Location: {loc.get('latitude')}, {loc.get('longitude')} {label}".strip()
        elif kind == "contacts":
            meta["contacts"] = m.get("contacts", [])
            parts = []
            for c in m.get("contacts", []):
                phones = ", ".join(p.get("phone", "") for p in c.get("phones", []))
                parts.append(f"{c.get('name', {}).get('formatted_name', '')} {phones}".strip())
            text = "Shared contact: " + "; ".join(parts)
        elif kind == "interactive":
            inter = m.get("interactive", {})
            reply = inter.get("button_reply") or inter.get("list_reply") or {}
            meta["interactive"] = inter
            text = reply.get("title", "") or _not_shown(
                f"interactive {inter.get('type', '')}".strip()
            )
        elif kind == "button":
            meta["button"] = m.get("button", {})
            text = m.get("button", {}).get("text", "")
        elif kind == "reaction":
            reaction = m.get("reaction", {})
            meta["reaction"] = reaction
            text = f"Reacted {reaction.get('emoji', '')}".strip()
        else:
            # A customer's message of a type read nowhere above still reaches an agent:
            # a line in words, and the part as it came (docs/channels.md, "Messages of
            # other types").
            meta["whatsapp_part"] = {
                k: v for k, v in m.items() if k not in ("from", "id", "timestamp", "type")
            }
            text = _other_message_text(kind, m)
        return InboundMessage(
            external_message_id=m.get("id", ""),
            sender_id=sender,
            sender_name=names.get(sender, ""),
            sender_phone=f"+{sender}" if sender and not sender.startswith("+") else sender,
            text=text,
            media=tuple(media),
            timestamp=epoch_to_datetime(m.get("timestamp")),
            reply_to_external_id=m.get("context", {}).get("id", ""),
            metadata=meta,
        )

    def _status(self, s: dict[str, Any]) -> StatusUpdate:
        errors = s.get("errors") or []
        first = errors[0] if errors else {}
        return StatusUpdate(
            external_message_id=s.get("id", ""),
            status=s.get("status", ""),
            timestamp=epoch_to_datetime(s.get("timestamp")),
            error_code=str(first.get("code", "")) if first else "",
            error=(first.get("title") or first.get("message") or "") if first else "",
            recipient_id=s.get("recipient_id", ""),
        )

    label = "WhatsApp"
    reply_window_name = "WhatsApp's customer-service window"
    reply_window_hint = "Only an approved message template can be sent now."

    def reply_window_hours(self) -> int:
        return int(getattr(settings, "WHATSAPP_WINDOW_HOURS", 24))

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        self.reply_window_check(outbound)  # WINDOW_CLOSED_CODE
        if outbound.files:
            return self._send_parts(account, outbound)
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": outbound.recipient_id,
            "type": "text",
            "text": {"preview_url": False, "body": outbound.text},
        }
        response = self.graph_call(
            "POST",
            graph_url(f"{account.external_id}/messages"),
            json=body,
            headers=self.auth_headers(account),
        )
        # read defensively: WhatsApp took the message (2xx), whatever its answer says
        return SendResult(
            external_message_id=_message_id(response),
            http_status=response.status_code,
            request_body=body,
            response_body=response.text[:2000],
        )

    def _send_parts(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """A reply with files: the text as a message of its own (first, so the customer
        reads it before the files; a caption would be limited to 1,024 characters and
        not shown with audio), then per file an upload (``POST /{phone-number-id}/media``)
        and a message of type image, video, audio or document naming the media id
        (documents keep their file name). Parts sent by an earlier attempt are skipped
        (``adapters.parts``)."""
        files_check("WhatsApp", outbound.files, self.reply_limits_for(account))
        parts = ReplyParts("WhatsApp", outbound)
        messages_url = graph_url(f"{account.external_id}/messages")
        headers = self.auth_headers(account)
        base = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": outbound.recipient_id,
        }

        def text() -> PartRequest:
            body = {**base, "type": "text", "text": {"preview_url": False, "body": outbound.text}}
            return body, partial(self.graph_call, "POST", messages_url, json=body, headers=headers)

        def file_message(file: OutboundFile, part: str, what: str) -> PartRequest:
            upload = partial(self._upload, account, file, parts, part, what)
            media: dict[str, Any] = {"id": parts.media_id(part, kept_for=MEDIA_KEPT, upload=upload)}
            kind = message_type(file.content_type)
            if kind == "document":
                media["filename"] = file.filename
            body = {**base, "type": kind, kind: media}
            return body, partial(self.graph_call, "POST", messages_url, json=body, headers=headers)

        return parts.send_each(outbound, text=text, file=file_message, sent_id=_message_id)

    def _upload(
        self,
        account: ChannelAccount,
        file: OutboundFile,
        parts: ReplyParts,
        part: str,
        what: str,
    ) -> str:
        """Upload a file's bytes (multipart ``file``, ``type``, ``messaging_product``);
        WhatsApp answers ``{"id": <media id>}``."""
        url = graph_url(f"{account.external_id}/media")
        response = parts.call(
            part,
            "upload",
            what,
            {"url": url, "messaging_product": "whatsapp", "file": file_summary(file)},
            lambda: self.graph_call(
                "POST",
                url,
                data={"messaging_product": "whatsapp", "type": file.content_type},
                files={"file": (file.filename, file.read(), file.content_type)},
                headers=self.auth_headers(account),
            ),
        )
        media_id = str(_json(response).get("id", ""))
        if not media_id:
            raise PermanentError(
                f"WhatsApp answered the upload of “{file.filename}” without a media id: "
                f"{response.text[:200]}"
            )
        return media_id

    def fetch_media(self, account: ChannelAccount, media: MediaRef) -> FetchedMedia:
        info = self.graph_call("GET", graph_url(media.media_id), headers=self.auth_headers(account))
        meta = info.json()
        url = meta.get("url", "")
        if not url:
            raise PermanentError(f"Media {media.media_id} has no download URL.")
        content, content_type = media_download(
            url, allowed_hosts=media_hosts(self), headers=self.auth_headers(account)
        )
        return FetchedMedia(
            content=content,
            content_type=meta.get("mime_type") or content_type or media.mime_type,
            filename=media.filename,
        )


#: At most this many of an order's products are named in its line (a multi-product
#: message offers up to 30); the rest are counted.
ORDER_ITEMS_NAMED = 30
#: A name from the payload (a type, an error title) is cut to this in a line.
NAME_MAX = 200


def _words(value: Any, limit: int = NAME_MAX) -> str:
    """A value from the payload as one short line of text."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _not_shown(kind: str) -> str:
    return f"(a WhatsApp {_words(kind) or 'untyped'} message this desk cannot show)"


def _order_text(order: dict[str, Any]) -> str:
    """``order``: "(a WhatsApp order from catalog C: 3 items: 2 × sku at 30 USD each; …)"
    then the customer's own text, if any."""
    raw_items = order.get("product_items")
    items = [i for i in raw_items if isinstance(i, dict)] if isinstance(raw_items, list) else []
    count = 0
    lines: list[str] = []
    for item in items:
        quantity = item.get("quantity")
        count += quantity if isinstance(quantity, int) and quantity > 0 else 1
        if len(lines) < ORDER_ITEMS_NAMED:
            line = f"{_words(quantity) or '?'} × {_words(item.get('product_retailer_id')) or '?'}"
            price = _words(item.get("item_price"))
            if price:
                line += f" at {price} {_words(item.get('currency'))}".rstrip() + " each"
            lines.append(line)
    if len(items) > ORDER_ITEMS_NAMED:
        lines.append(f"and {len(items) - ORDER_ITEMS_NAMED} more products")
    catalog = _words(order.get("catalog_id"))
    head = "(a WhatsApp order" + (f" from catalog {catalog}" if catalog else "")
    head += f": {count} item{'' if count == 1 else 's'}"
    head += (": " + "; ".join(lines) if lines else "") + ")"
    note = str(order.get("text") or "").strip()
    return f"{head}\n{note}" if note else head


def _other_message_text(kind: str, m: dict[str, Any]) -> str:
    """What an agent reads for a message type the adapter has no case for: the types
    WhatsApp documents (``order``, ``unsupported``, ``system``, ``request_welcome``) in
    words, anything else as "(a WhatsApp <type> message this desk cannot show)"."""
    value = m.get(kind)
    part: dict[str, Any] = value if isinstance(value, dict) else {}
    if kind == "order":
        return _order_text(part)
    if kind == "unsupported":
        errors = [e for e in m.get("errors") or [] if isinstance(e, dict)]
        reasons = "; ".join(
            _words(e.get("title") or e.get("message") or e.get("code")) for e in errors
        )
        what = _words(part.get("type"))
        text = f"(a message WhatsApp could not show: {reasons or 'no reason given'}"
        return text + (f"; its type: {what})" if what else ")")
    if kind == "system":
        body = str(part.get("body") or "").strip()
        return f"(a WhatsApp notice: {body})" if body else _not_shown("system")
    if kind == "request_welcome":
        return "(opened a WhatsApp chat with the business for the first time; no text yet)"
    return _not_shown(kind)


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message_id(response: Any) -> str:
    """The message id of a send's answer, "" when it names none (or is not JSON)."""
    ids = [platform_id(m.get("id")) for m in dict_items(_json(response), "messages")]
    return ids[0] if ids else ""
