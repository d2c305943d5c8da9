"""Messenger and Instagram share the Messenger Platform webhook shape and Send API."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import requests

from channels_app.adapters.base import (
    Event,
    FetchedMedia,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundFile,
    OutboundRequest,
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

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount


# A file's attachment type in the Send API: image, video, audio, or file for anything else.
def attachment_type(content_type: str) -> str:
    kind = content_type.split("/", 1)[0].strip().lower()
    return kind if kind in ("image", "video", "audio") else "file"


ATTACHMENT_KINDS = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "document",
    "sticker": "sticker",
}


class MessagingPlatformAdapter(MetaAdapter):
    object_name: str
    # Attachment payload URLs: scontent.*.fbcdn.net, cdn.fbsbx.com, lookaside.fbsbx.com.
    media_hosts: tuple[str, ...] = ("fbcdn.net", "fbsbx.com")

    def check_well_formed(self, request: WebhookRequest) -> None:
        data = json_body(request.body)
        if not isinstance(data, dict) or not isinstance(data.get("entry", []), list):
            raise MalformedPayload("Expected a JSON object with an 'entry' list.")

    def addressed_to(self, request: WebhookRequest) -> frozenset[str]:
        """Every ``entry[].id``: the page id (Messenger) or Instagram account id the
        entry is for. One Meta app signs for all its pages with one app secret, and may
        batch entries of several pages into one delivery."""
        ids = {
            platform_id(entry.get("id"))
            for entry in dict_items(json_body_or_none(request.body), "entry")
        }
        return frozenset(ids - {""})

    def send_path(self, account: ChannelAccount) -> str:
        return "me/messages"

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        data = json_body(request.body)
        if data.get("object") != self.object_name:
            return [UnknownEvent(f"object={data.get('object')!r}")]
        events: list[Event] = []
        for entry in data.get("entry", []):
            for item in entry.get("messaging", []):
                events.extend(self._item(item, str(entry.get("id", ""))))
            for change in entry.get("changes", []):
                events.append(UnknownEvent(f"field={change.get('field')!r}"))
        return events

    def _item(self, item: dict[str, Any], business_id: str = "") -> list[Event]:
        sender = item.get("sender", {}).get("id", "")
        recipient = item.get("recipient", {}).get("id", "")
        at = epoch_to_datetime(item.get("timestamp"), millis=True)
        if "message" in item:
            return [self._message(item["message"], sender, recipient, at)]
        if "message_edit" in item:
            return [self._edit(item["message_edit"], sender, business_id, item, at)]
        if "postback" in item:
            postback = item["postback"]
            return [
                InboundMessage(
                    external_message_id=postback.get("mid")
                    or f"postback-{sender}-{item.get('timestamp')}",
                    sender_id=sender,
                    text=postback.get("title", ""),
                    timestamp=at,
                    metadata={"postback": postback},
                )
            ]
        if "reaction" in item:
            reaction = item["reaction"]
            emoji = reaction.get("emoji") or reaction.get("reaction", "")
            verb = "Removed reaction" if reaction.get("action") == "unreact" else "Reacted"
            return [
                InboundMessage(
                    external_message_id=f"reaction-{reaction.get('mid', '')}-{sender}-"
                    f"{reaction.get('action', '')}-{item.get('timestamp')}",
                    sender_id=sender,
                    text=f"{verb} {emoji}".strip(),
                    timestamp=at,
                    reply_to_external_id=reaction.get("mid", ""),
                    metadata={"reaction": reaction},
                )
            ]
        if "delivery" in item:
            delivery = item["delivery"]
            watermark = epoch_to_datetime(delivery.get("watermark"), millis=True)
            mids = delivery.get("mids") or []
            if not mids:
                return [
                    StatusUpdate(
                        external_message_id="",
                        status="delivered",
                        timestamp=at,
                        watermark=watermark,
                        recipient_id=sender,
                    )
                ]
            return [
                StatusUpdate(
                    external_message_id=mid,
                    status="delivered",
                    timestamp=at,
                    recipient_id=sender,
                )
                for mid in mids
            ]
        if "read" in item:
            read = item["read"]
            if read.get("mid"):
                return [
                    StatusUpdate(
                        external_message_id=read["mid"],
                        status="read",
                        timestamp=at,
                        recipient_id=sender,
                    )
                ]
            return [
                StatusUpdate(
                    external_message_id="",
                    status="read",
                    timestamp=at,
                    watermark=epoch_to_datetime(read.get("watermark"), millis=True),
                    recipient_id=sender,
                )
            ]
        keys = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
        return [UnknownEvent(f"messaging event {', '.join(keys) or 'empty'}")]

    def _message(self, msg: dict[str, Any], sender: str, recipient: str, at: Any) -> Event:
        is_echo = bool(msg.get("is_echo"))
        customer = recipient if is_echo else sender
        meta: dict[str, Any] = {}
        media: list[MediaRef] = []
        text = msg.get("text", "")
        lines: list[str] = []  # a line per attachment that is not a downloadable file
        posts: set[str] = set()
        for att in msg.get("attachments", []) or []:
            kind = att.get("type", "")
            payload = att.get("payload") or {}
            if kind in ATTACHMENT_KINDS and payload.get("url"):
                media.append(
                    MediaRef(
                        kind="sticker" if payload.get("sticker_id") else ATTACHMENT_KINDS[kind],
                        url=payload["url"],
                        filename=f"{kind}-{msg.get('mid', '')[-12:]}",
                    )
                )
            elif kind == "location":
                coords = payload.get("coordinates", {})
                meta["location"] = coords
                text = text or f"Location: {coords.get('lat')}, {coords.get('long')}"
            else:
                # Kept as it came, and said in words where the agent reads the message.
                meta.setdefault("other_attachments", []).append(att)
                post = (
                    str(payload.get("ig_post_media_id") or "") if isinstance(payload, dict) else ""
                )
                line = attachment_line(att)
                if line not in lines and not (post and post in posts):
                    lines.append(line)
                if post:  # a shared post comes as ``share`` and ``ig_post``: one line
                    posts.add(post)
        story = (msg.get("reply_to") or {}).get("story")
        if isinstance(story, dict):
            meta["reply_to_story"] = story
            lines.insert(0, f"Replied to your story: {_words(story.get('url'))}".rstrip(": "))
        if msg.get("is_unsupported") and not (text or media or lines):
            lines.append(f"(a message {self.label or 'the channel'} could not show)")
        text = "\n".join(x for x in (text, *lines) if x)
        if "quick_reply" in msg:
            meta["quick_reply"] = msg["quick_reply"]
        if is_echo:
            meta["echo"] = True
            meta["app_id"] = str(msg.get("app_id", ""))
        return InboundMessage(
            external_message_id=msg.get("mid", ""),
            sender_id=customer,
            text=text,
            media=tuple(media),
            is_echo=is_echo,
            timestamp=at,
            reply_to_external_id=(msg.get("reply_to") or {}).get("mid", ""),
            metadata=meta,
        )

    def _edit(
        self,
        edit: dict[str, Any],
        sender: str,
        business_id: str,
        item: dict[str, Any],
        at: Any,
    ) -> Event:
        """``message_edit``: the customer changed a message they sent. The new text is a
        message of its own, "(edited) <new text>", replying to the one edited (the edited
        message keeps what it said: the timeline shows both, as the customer's app did);
        its id names the edit (``edit-<mid>-<num_edit>``), so a redelivery is one."""
        mid = str(edit.get("mid", ""))
        if not mid or (business_id and sender == business_id):
            return UnknownEvent("message_edit of a message the business sent or without id")
        count = edit.get("num_edit")
        nth = count if count is not None else item.get("timestamp")
        return InboundMessage(
            external_message_id=f"edit-{mid}-{nth}",
            sender_id=sender,
            text=f"(edited) {edit.get('text') or ''}".rstrip(),
            timestamp=at,
            reply_to_external_id=mid,
            metadata={"message_edit": edit},
        )

    # Messenger's and Instagram's standard messaging window (24 hours, ``reply_window_open``
    # of ``MetaAdapter``): a reply goes as ``RESPONSE`` (Messenger; Instagram's body has no
    # type), which Meta takes only within it. Message tags (``HUMAN_AGENT``, 7 days) need
    # Meta's approval and are not used.
    reply_window_hint = "A reply can go out once the customer writes again."

    def send_body(self, outbound: OutboundRequest) -> dict[str, Any]:
        """Messenger's Send API: a reply inside the 24-hour window is ``RESPONSE``."""
        return {
            "recipient": {"id": outbound.recipient_id},
            "messaging_type": "RESPONSE",
            "message": {"text": outbound.text},
        }

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        self.reply_window_check(outbound)  # no request Meta could only refuse
        if outbound.files:
            return self._send_parts(account, outbound)
        body = self.send_body(outbound)
        response = self.graph_call(
            "POST",
            graph_url(self.send_path(account)),
            json=body,
            headers=self.auth_headers(account),
        )
        # read defensively: Meta took the message (2xx), whatever its answer says
        return SendResult(
            external_message_id=_message_id(response),
            http_status=response.status_code,
            request_body=body,
            response_body=response.text[:2000],
        )

    def _send_parts(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """A reply with files: the text as a message of its own, then one message per file
        (the Send API takes one attachment per message); parts sent by an earlier attempt
        are skipped (``adapters.parts``)."""
        files_check(
            self.label, outbound.files, self.reply_limits_for(account), more=self.file_problem
        )
        url = graph_url(self.send_path(account))
        headers = self.auth_headers(account)

        def text() -> PartRequest:
            body = self.send_body(outbound)
            return body, partial(self.graph_call, "POST", url, json=body, headers=headers)

        return ReplyParts(self.label, outbound).send_each(
            outbound,
            text=text,
            file=lambda file, _part, _what: self.file_request(url, headers, outbound, file),
            sent_id=_message_id,
        )

    def file_problem(self, file: OutboundFile) -> str:
        """A channel's own reason to refuse a file before anything is sent ("": none)."""
        return ""

    def file_request(
        self, url: str, headers: dict[str, str], outbound: OutboundRequest, file: OutboundFile
    ) -> tuple[dict[str, Any], Callable[[], requests.Response]]:
        """One file's message: (its summary for the attempt, the call). Messenger uploads
        the bytes with the message: multipart ``recipient``, ``messaging_type``,
        ``message`` (``{"attachment": {"type": …, "payload": {"is_reusable": false}}}``) and
        ``filedata``; the answer is ``{"recipient_id", "message_id"}``."""
        base = self.send_body(outbound)
        message = {
            "attachment": {
                "type": attachment_type(file.content_type),
                "payload": {"is_reusable": False},
            }
        }
        fields = {
            key: json.dumps(value) if isinstance(value, dict) else value
            for key, value in base.items()
            if key != "message"
        }
        fields["message"] = json.dumps(message)
        summary = {
            **{k: v for k, v in base.items() if k != "message"},
            "message": message,
            "filedata": file_summary(file),
        }
        return summary, partial(
            self.graph_call,
            "POST",
            url,
            data=fields,
            files={"filedata": (file.filename, file.read(), file.content_type)},
            headers=headers,
        )

    def fetch_media(self, account: ChannelAccount, media: MediaRef) -> FetchedMedia:
        content, content_type = media_download(media.url, allowed_hosts=media_hosts(self))
        return FetchedMedia(content=content, content_type=content_type, filename=media.filename)


#: A caption or title from the payload is cut to this in a line.
TITLE_MAX = 200

#: How a non-file attachment reads: Instagram's shared posts (``share``, and since
#: November 2025 ``ig_post`` beside it), story mentions, reels; Messenger's link
#: ``fallback`` and ``template`` cards.
ATTACHMENT_WORDS = {
    "share": "Shared a post",
    "ig_post": "Shared a post",
    "story_mention": "Mentioned you in a story",
    "ig_reel": "Shared a reel",
    "reel": "Shared a reel",
    "fallback": "Shared a link",
}


def _words(value: Any, limit: int = TITLE_MAX) -> str:
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def attachment_line(att: dict[str, Any]) -> str:
    """One line in words for an attachment that is not a file this desk downloads:
    "Shared a post: <caption> <url>", "Mentioned you in a story: <url>", "Shared a reel:
    …", "Shared a link: <title> <url>", a template's cards by title and link, else
    "(an attachment of type <type> this desk cannot show)" with its link if it has one."""
    kind = _words(att.get("type"), 40)
    value = att.get("payload")
    payload: dict[str, Any] = value if isinstance(value, dict) else {}
    url = _words(payload.get("url") or att.get("url"), 2000)
    title = _words(payload.get("title") or att.get("title"))
    if kind == "template":
        cards = [e for e in payload.get("elements") or [] if isinstance(e, dict)]
        named = [
            " ".join(
                x
                for x in (
                    _words(e.get("title")),
                    _words(e.get("subtitle")),
                    _words(e.get("item_url") or (e.get("default_action") or {}).get("url"), 2000),
                )
                if x
            )
            for e in cards[:10]
        ]
        named = [n for n in named if n] or [_words(payload.get("text"))]
        if any(named):
            return "Shared: " + "; ".join(n for n in named if n)
        return "(a template attachment this desk cannot show)"
    words = ATTACHMENT_WORDS.get(kind)
    if words is None:
        what = f"(an attachment of type {kind or 'none'} this desk cannot show)"
        return f"{what} {url}" if url else what
    detail = " ".join(x for x in (title, url) if x)
    return f"{words}: {detail}" if detail else words


def _message_id(response: requests.Response) -> str:
    """The message id of a send's answer, "" when it names none (or is not JSON)."""
    try:
        data = response.json()
    except ValueError:
        return ""
    return platform_id(data.get("message_id")) if isinstance(data, dict) else ""
