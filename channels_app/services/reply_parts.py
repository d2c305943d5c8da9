"""The parts of one reply already sent to the customer's channel.

A reply with files is one delivery (``channel_reply``) but several provider calls on the
messaging channels: the text, then each file (an upload, then a message naming it). When
a call fails after earlier ones succeeded, the engine retries the whole delivery; the
adapter then skips what the customer already has. Each part's progress is kept on the
reply's ``Message.metadata["reply_parts"]``, written right after the provider's answer
(one short transaction, no transaction open during the HTTP call):

``{"text": {"id": <provider message id>},
"file:<attachment id>": {"media_id": …, "uploaded_at": <ISO time>, "id": …}}``

A part with an ``id`` was sent (``adapters.parts.SENT_NO_ID`` when the provider took it
without naming its message); one with only a ``media_id`` was uploaded and is sent
again by that id (while the provider keeps it) without uploading the bytes twice. Read
them with ``channels_app.selectors.reply_parts_get``.
"""

from __future__ import annotations

from django.db import transaction

from channels_app.selectors import REPLY_PARTS_KEY
from tickets.models import Message


def reply_part_record(*, message_id: int, part: str, **values: str) -> None:
    """Merge ``values`` into the record of ``part`` (e.g. ``media_id=…`` after an upload,
    ``id=…`` once the provider accepted the message). A deleted message records nothing."""
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            return
        metadata = dict(message.metadata or {})
        parts = dict(metadata.get(REPLY_PARTS_KEY) or {})
        parts[part] = {**dict(parts.get(part) or {}), **values}
        metadata[REPLY_PARTS_KEY] = parts
        message.metadata = metadata
        message.save(update_fields=["metadata", "updated_at"])
