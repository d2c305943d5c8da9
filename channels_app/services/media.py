"""Attachments recorded by reference: fetched later through their channel adapter."""

from __future__ import annotations

import logging

from channels_app import selectors
from channels_app.adapters.base import (
    MediaRef,
    get_adapter,
)
from support.errors import PermanentError
from tickets import services as ticket_services
from tickets.models import (
    Attachment,
)

logger = logging.getLogger(__name__)


def _enqueue_downloads(attachment_ids: list[int]) -> None:
    from channels_app.tasks import attachment_download_task

    for pk in attachment_ids:
        attachment_download_task.delay(pk)


def attachment_download(*, attachment_id: int) -> bool:
    """Fetch a referenced attachment through its channel adapter and store it.

    Adapters download only from their channel's media hosts and stop past
    ``CHANNELS_MEDIA_MAX_BYTES`` (``adapters.base.media_download``); the size is checked
    again here so that no adapter can store more.
    """
    attachment = Attachment.objects.select_related("message__ticket").get(pk=attachment_id)
    if attachment.file:
        return False
    ticket = attachment.message.ticket
    account = selectors.channel_account_for_ticket(ticket)
    if account is None:
        raise PermanentError(f"No {ticket.channel} account to download media with.")
    adapter = get_adapter(attachment.message.channel)
    fetched = adapter.fetch_media(
        account,
        MediaRef(
            kind=attachment.kind,
            media_id=attachment.external_media_id,
            url=attachment.external_url,
            mime_type=attachment.content_type,
            filename=attachment.filename,
        ),
    )
    from channels_app.adapters.base import media_max_bytes

    if len(fetched.content) > media_max_bytes():
        raise PermanentError(
            f"Media larger than {media_max_bytes()} bytes (CHANNELS_MEDIA_MAX_BYTES)."
        )
    ticket_services.attachment_content_store(
        attachment=attachment,
        content=fetched.content,
        content_type=fetched.content_type,
        filename=fetched.filename,
    )
    return True
