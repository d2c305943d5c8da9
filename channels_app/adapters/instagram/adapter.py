"""Instagram messaging (Instagram API with the Messenger Platform webhook shape)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings

from channels_app.adapters.base import OutboundFile, ReplyLimits
from channels_app.adapters.meta.messaging import MessagingPlatformAdapter, attachment_type

if TYPE_CHECKING:
    from channels_app.adapters.base import OutboundRequest
    from channels_app.models import ChannelAccount

# Instagram messaging takes a file only by a URL it fetches (``attachment.payload.url``):
# images PNG/JPEG up to 8 MB; video MP4, OGG, AVI, MOV, WebM and audio AAC, M4A, WAV up to
# 25 MB ("Send a Message", supported media). MB as 1,000,000 bytes.
IMAGE_TYPES = ("image/png", "image/jpeg")
VIDEO_TYPES = ("video/mp4", "video/ogg", "video/x-msvideo", "video/quicktime", "video/webm")
AUDIO_TYPES = ("audio/aac", "audio/mp4", "audio/x-m4a", "audio/wav", "audio/x-wav")
# Text: at most 1,000 bytes of UTF-8 (Meta counts bytes, not characters).
TEXT_ONLY = ReplyLimits(text_max_bytes=1000)
WITH_FILES = ReplyLimits(
    text_max_bytes=1000,
    files=True,
    files_max_count=10,
    file_max_bytes=25_000_000,
    file_max_bytes_by_type=(("image/", 8_000_000),),
    other_files_word="video and audio",  # the only other types it takes
    file_types=(*IMAGE_TYPES, *VIDEO_TYPES, *AUDIO_TYPES),
)


class InstagramAdapter(MessagingPlatformAdapter):
    channel = "instagram"
    object_name = "instagram"
    # lookaside.fbsbx.com/ig_messaging_cdn, and Instagram's own CDN.
    media_hosts: tuple[str, ...] = ("fbcdn.net", "fbsbx.com", "cdninstagram.com")
    label = "Instagram"

    # computed from settings (read on the adapter instance, ``get_adapter``), not a constant
    @property
    def reply_limits(self) -> ReplyLimits:  # type: ignore[override]
        """Text: at most 1,000 bytes of UTF-8 (docs/channels.md). Files only
        when Instagram can fetch them: with ``S3_ENABLED`` (a short-lived signed URL per
        file); with local storage nothing outside can reach them, so no files."""
        return WITH_FILES if getattr(settings, "S3_ENABLED", False) else TEXT_ONLY

    def send_path(self, account: ChannelAccount) -> str:
        # POST /<IG professional account or Page id>/messages (Instagram messaging Send API)
        return f"{account.external_id or 'me'}/messages"

    def send_body(self, outbound: OutboundRequest) -> dict[str, Any]:
        """Instagram's documented body: the recipient's Instagram-scoped id (IGSID) and
        the text; no ``messaging_type`` (a Messenger field). Answer:
        ``{"recipient_id": IGSID, "message_id": ...}``."""
        return {"recipient": {"id": outbound.recipient_id}, "message": {"text": outbound.text}}

    def file_problem(self, file: OutboundFile) -> str:
        if not file.public_url():
            return (
                f"Instagram fetches a file from a link, and “{file.filename}” is not reachable "
                "from outside (files are stored on this server: S3 is off)"
            )
        return ""

    def file_request(
        self, url: str, headers: dict[str, str], outbound: OutboundRequest, file: OutboundFile
    ) -> tuple[dict[str, Any], Callable[[], requests.Response]]:
        """One file's message by URL: ``{"recipient": {"id": IGSID}, "message":
        {"attachment": {"type": image|video|audio, "payload": {"url": <signed URL>}}}}``;
        Instagram fetches the file. The attempt's summary keeps the URL without its
        signature (the query string), which would let anyone read the file until it
        expires."""
        link = file.public_url()
        kind = attachment_type(file.content_type)
        body = {
            "recipient": {"id": outbound.recipient_id},
            "message": {"attachment": {"type": kind, "payload": {"url": link}}},
        }
        parts = urlsplit(link)
        shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        summary = {
            "recipient": {"id": outbound.recipient_id},
            "message": {"attachment": {"type": kind, "payload": {"url": shown}}},
        }
        return summary, partial(self.graph_call, "POST", url, json=body, headers=headers)
