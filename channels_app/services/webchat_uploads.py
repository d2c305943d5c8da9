"""A file a web chat visitor sends (``api-webchat-upload``): stored, then recorded.

Verify, record, acknowledge as for any delivery, with the bytes kept first: the file is
written to storage under the visitor's own prefix, then an ordinary web chat event is
recorded whose raw body names it (``{"client_id", "text", "file": {"key", "name",
"type", "size"}}``). Only then does the visitor get its 2xx, so a file acknowledged is
never lost; the drain reads it back and makes the message and its ``Attachment``
(``WebchatAdapter.parse``), once, whatever the number of drains (the message's channel id
is the natural key). When the stored copy is deleted: ``staged_uploads``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.core.files.base import File
from django.core.files.storage import default_storage

from channels_app.adapters.base import MalformedPayload
from channels_app.adapters.webchat.adapter import SESSION_HEADER, upload_key, upload_type
from channels_app.models import ChannelAccount, InboundEvent
from channels_app.services.intake import inbound_receive, webhook_request_build
from support.parsing import safe_file_name


@dataclass(frozen=True)
class WebchatUpload:
    """What the visitor sent: its file (already read by Django's upload handler, in
    memory or a temporary file) and the message's fields."""

    file: File  # type: ignore[type-arg]
    filename: str
    size: int
    text: str
    client_id: str


def webchat_upload_receive(
    *, account: ChannelAccount, visitor_id: str, session: str, upload: WebchatUpload
) -> tuple[InboundEvent, bool]:
    """Check the file's type, store it and record its event; (event, created).

    ``MalformedPayload`` (nothing stored) for an empty file or a type outside
    ``UPLOAD_TYPES``. A repeated client id answers the event already recorded and stores
    nothing more."""
    if upload.size <= 0:
        raise MalformedPayload("The file is empty.")
    name = safe_file_name(upload.filename, fallback="file")
    upload.file.seek(0)
    head = upload.file.read(16)
    upload.file.seek(0)
    found = upload_type(name, head)
    if found is None:
        raise MalformedPayload(
            "This type of file cannot be sent: pictures (JPEG, PNG, GIF, WebP), "
            "PDF and plain text only."
        )
    content_type, _ = found
    delivery = f"{visitor_id}:{upload.client_id}"
    existing = InboundEvent.objects.filter(
        account=account, channel="webchat", external_id=delivery
    ).first()
    if existing is not None:
        return existing, False
    key = default_storage.save(
        upload_key(account.pk, visitor_id, upload.client_id, name), upload.file
    )
    body = json.dumps(
        {
            "client_id": upload.client_id,
            "text": upload.text,
            "file": {"key": key, "name": name, "type": content_type, "size": upload.size},
        }
    ).encode()
    request = webhook_request_build(
        headers={SESSION_HEADER: session, "content-type": "application/json"}, body=body, query={}
    )
    return inbound_receive(account=account, request=request)
