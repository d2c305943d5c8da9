"""Staged uploads: the copy of a web chat visitor's file kept in storage from its 202
until the drain makes it the message's attachment (``services/webchat_uploads.py``;
``webchat-uploads/<account>/<visitor>/<hash of client id>/<name>``, ``upload_key``).

A staged copy is deleted once it is not needed, and only then:

- after the drain committed the message with its attachment (``_message_ingest``);
- with its event, once that is erased (``channels_app.privacy``), purged by the raw event
  retention (``channels_app.retention``) or discarded from the admin
  (``inbound_events_discard``): always after the commit, so a rollback never leaves an
  event naming a file that is gone.

A failed delete is logged with the file's folder and the error's type only (the file's
name is the visitor's, its path is in the error's text) and never stops what deletes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet

from channels_app.adapters.webchat.adapter import event_staged_names
from channels_app.models import InboundEvent

logger = logging.getLogger(__name__)

#: What deleting from storage raises: disk, or S3 through django-storages.
STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)


def staged_uploads_delete(names: Iterable[str]) -> int:
    """Delete these staged copies (a missing one is no error); returns how many went. A
    failure is logged (the folder and the error's type: no file name, no content) and
    the rest are deleted all the same."""
    deleted = 0
    for name in names:
        try:
            default_storage.delete(name)
        except STORAGE_ERRORS as exc:
            logger.warning(
                "Could not delete a staged web chat upload in %s/ (%s)",
                name.rpartition("/")[0],
                type(exc).__name__,
            )
        else:
            deleted += 1
    return deleted


def staged_uploads_delete_on_commit(names: Iterable[str]) -> None:
    """Delete these staged copies once the open transaction commits (at once when none
    is open). ``robust``: whatever the delete raises, the committed work stands."""
    names = list(names)
    if names:
        transaction.on_commit(lambda: staged_uploads_delete(names), robust=True)


def inbound_events_staged_names(events: QuerySet[InboundEvent]) -> list[str]:
    """The staged copies these deliveries name as their own (``event_staged_names``)."""
    rows = events.filter(channel="webchat").values_list("account_id", "external_id", "body")
    return [
        name
        for account_id, external_id, body in rows.iterator(chunk_size=200)
        for name in event_staged_names(account_id, external_id, bytes(body))
    ]


def inbound_events_discard(*, events: QuerySet[InboundEvent]) -> int:
    """Delete these raw deliveries (the admin's delete) and, after the commit, the staged
    files they name; returns how many deliveries went."""
    with transaction.atomic():
        names = inbound_events_staged_names(events)
        _, per_model = events.delete()
        staged_uploads_delete_on_commit(names)
    return per_model.get(InboundEvent._meta.label, 0)
