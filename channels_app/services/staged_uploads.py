"""Staged uploads: the copy of a web chat visitor's file kept in storage from its 202
until the drain makes it the message's attachment (``services/webchat_uploads.py``;
``webchat-uploads/<account>/<visitor>/<hash of client id>/<name>``, ``upload_key``).

A staged copy is deleted once it is not needed, and only then:

- after the drain committed the message with its attachment (``_message_ingest``);
- with its event, once that is erased (``channels_app.privacy``), purged by the raw event
  retention (``channels_app.retention``) or discarded from the admin
  (``inbound_events_discard``): always after the commit, so a rollback never leaves an
  event naming a file that is gone;
- by the hourly ``webchat-uploads-purge`` (``staged_uploads_purge``): a file older than
  ``WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS`` that no pending event (received, retrying, or
  a dead letter awaiting a re-drive) names. It catches what the above could not: a delete
  that failed, a file stored whose event was never recorded.

A failed delete is logged with the file's folder and the error's type only (the file's
name is the visitor's, its path is in the error's text) and never stops what deletes it:
the hourly purge tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from channels_app.adapters.webchat.adapter import (
    UPLOAD_ROOT,
    event_staged_names,
    upload_prefix,
)
from channels_app.models import InboundEvent, InboundStatus

logger = logging.getLogger(__name__)

#: What deleting from storage raises: disk, or S3 through django-storages.
STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)
#: Events that may still need their file: not processed yet, or a dead letter.
PENDING = (InboundStatus.RECEIVED, InboundStatus.RETRYING, InboundStatus.DEAD)


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
                "Could not delete a staged web chat upload in %s/ (%s); the hourly "
                "webchat-uploads-purge tries again",
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


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:  # disk: nothing was ever staged (S3 lists nothing)
        return [], []


def staged_uploads_purge(*, now: datetime | None = None, max_age_hours: float | None = None) -> int:
    """Delete the staged copies older than ``WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS`` that no
    pending event names; returns how many went. Only names of the staging layout
    (``webchat-uploads/<account id>/v_<visitor>/<folder>/<name>``) are ever looked at.
    0 (or less) switches it off. Idempotent: a second run finds nothing more."""
    hours = settings.WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS if max_age_hours is None else max_age_hours
    if hours <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(hours=hours)
    deleted = 0
    accounts, _ = _listdir(UPLOAD_ROOT)
    for account in accounts:
        if not account.isdigit():
            continue
        visitors, _ = _listdir(f"{UPLOAD_ROOT}/{account}")
        for visitor in visitors:
            if visitor.startswith("v_"):
                deleted += _visitor_purge(int(account), visitor, cutoff)
    if deleted:
        logger.info("Staged web chat uploads purged (older than %s hours): %s", hours, deleted)
    return deleted


def _visitor_purge(account_id: int, visitor: str, cutoff: datetime) -> int:
    prefix = upload_prefix(account_id, visitor)
    old: list[str] = []
    folders, _ = _listdir(prefix.rstrip("/"))
    for folder in folders:
        _, files = _listdir(f"{prefix}{folder}")
        for file in files:
            name = f"{prefix}{folder}/{file}"
            try:
                modified = default_storage.get_modified_time(name)
            except FileNotFoundError:  # deleted meanwhile (its drain)
                continue
            if modified < cutoff:
                old.append(name)
    if not old:
        return 0
    needed = set(
        inbound_events_staged_names(
            InboundEvent.objects.filter(
                account_id=account_id, status__in=PENDING, external_id__startswith=f"{visitor}:"
            )
        )
    )
    return staged_uploads_delete(name for name in old if name not in needed)
