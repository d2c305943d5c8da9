"""Attachments recorded by reference: fetched later through their channel adapter.

A referenced attachment is ``pending`` until its file is stored (``stored``) or it is known
that it will not come (``failed``, with the reason in words): a permanent error, retries
run out, or the channel's reference expired before it could be fetched. Downloads whose
task never ran (the broker was down at the commit, a worker was killed) are queued again
by ``attachment_downloads_sweep`` while the channel still keeps the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from redis import RedisError

from channels_app import selectors
from channels_app.adapters.base import (
    InboundMessage,
    MediaRef,
    WebhookRequest,
    get_adapter,
    media_max_bytes,
)
from support.errors import PermanentError, RetryableError
from support.redis_client import Lease
from support.services import audit_log_record
from tickets import services as ticket_services
from tickets.models import (
    NOTHING_TO_FETCH,
    Attachment,
    Channel,
    DownloadStatus,
)

logger = logging.getLogger(__name__)

#: How long a channel keeps a file its delivery referred to. WhatsApp: a media id can be
#: looked up for 30 days (the download URL the look-up gives lives 5 minutes, and each
#: attempt looks it up afresh). Messenger and Instagram give a signed Meta CDN URL, which
#: expires (Meta does not publish after how long: days, not weeks). X: the direct
#: message's media URL, read with the account's credentials, lives as long as the message;
#: 30 days bounds the retries all the same. Past it the sweep marks the download failed.
MEDIA_REFERENCE_LIFETIME: dict[str, timedelta] = {
    Channel.WHATSAPP: timedelta(days=30),
    Channel.MESSENGER: timedelta(days=3),
    Channel.INSTAGRAM: timedelta(days=3),
    Channel.TWITTER: timedelta(days=30),
}
MEDIA_REFERENCE_LIFETIME_DEFAULT = timedelta(days=3)
#: How long after its message (or after its last attempt started) a pending download is
#: queued again by the sweep: past the download task's whole retry chain between two
#: attempts (its time limit, 180 s, plus a backoff of at most 80 s), so a download in
#: progress or waiting for its retry is left alone.
MEDIA_SWEEP_STALE_SECONDS = 600.0
#: Downloads queued again, and expired ones marked failed, per sweep (the next takes more).
MEDIA_SWEEP_BATCH = 200
#: One download of an attachment at a time (a Redis lease, past the task's time limit).
DOWNLOAD_LEASE = "attachment-download:{attachment_id}"
DOWNLOAD_LEASE_SECONDS = 200
#: ``download_error`` words are cut to this (the column takes 500).
ERROR_WORDS_MAX = 300

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_WITH_QUERY = re.compile(r"\S*\?\S+")


def _enqueue_downloads(attachment_ids: list[int]) -> None:
    """Queue the downloads (after the commit that recorded them). The broker being down
    loses nothing: the attachments stay ``pending`` and the sweep queues them later."""
    from channels_app.tasks import attachment_download_task

    for pk in attachment_ids:
        try:
            attachment_download_task.delay(pk)
        except Exception:  # noqa: BLE001 - the broker down: the media sweep takes it
            logger.warning(
                "Could not queue the download of attachment %s; the media sweep will", pk
            )


#: ``external_media_id`` of a file that came inside its delivery (an e-mail's attachment):
#: ``delivery:<inbound event id>:<message index>:<file index>``, read again from the
#: delivery as received (``InboundEvent.body``, kept ``RAW_EVENT_RETENTION_DAYS``).
KEPT_PREFIX = "delivery:"


def media_kept_in_delivery(
    message: InboundMessage, *, event_id: int, message_index: int
) -> InboundMessage:
    """The message with each file that came inside its delivery (its bytes in hand: an
    e-mail's attachment) named by where it is kept instead (``KEPT_PREFIX``): its
    attachment is stored after the commit by the download task, as other channels' media
    are, not inside the drain's transaction (an S3 write holding the account's drain lock
    and the delivery's rows; a rollback left the file in storage, named by no row, out of
    an erasure's reach). A web chat visitor's file (``staged_name``) is copied as before."""
    if not any(m.content is not None and not m.staged_name for m in message.media):
        return message
    media = tuple(
        replace(m, content=None, media_id=f"{KEPT_PREFIX}{event_id}:{message_index}:{index}")
        if m.content is not None and not m.staged_name
        else m
        for index, m in enumerate(message.media)
    )
    return replace(message, media=media)


def _kept_reference(reference: str) -> tuple[int, int, int]:
    try:
        event_id, message_index, index = (int(n) for n in reference[len(KEPT_PREFIX) :].split(":"))
    except ValueError:
        raise PermanentError("Not a reference to a file kept in its delivery.") from None
    return event_id, message_index, index


def _kept_media_store(attachment: Attachment) -> bool:
    """Store a file that came inside its delivery (``KEPT_PREFIX``), read again from the
    delivery as received, and with it the message's other such files still pending: the
    delivery is parsed once for all of them (an e-mail holds up to 100 attachments in up
    to 30 MB; a parse each would be a hundred parses of one hostile e-mail)."""
    from channels_app.models import InboundEvent

    event_id, message_index, _ = _kept_reference(attachment.external_media_id)
    event = InboundEvent.objects.select_related("account").filter(pk=event_id).first()
    if event is None or not event.body_bytes:
        raise PermanentError(
            "the delivery that carried this file is no longer kept (erased, or past "
            "RAW_EVENT_RETENTION_DAYS)"
        )
    adapter = get_adapter(event.channel)
    request = WebhookRequest(headers=event.headers, body=event.body_bytes)
    messages = [m for m in adapter.parse(event.account, request) if isinstance(m, InboundMessage)]
    media = messages[message_index].media if message_index < len(messages) else ()
    prefix = f"{KEPT_PREFIX}{event_id}:{message_index}:"
    siblings = list(
        Attachment.objects.filter(
            message_id=attachment.message_id,
            external_media_id__startswith=prefix,
            download_status=DownloadStatus.PENDING,
            file="",
        )
        .exclude(pk=attachment.pk)
        .order_by("pk")
    )
    for row in [attachment, *siblings]:
        _, _, index = _kept_reference(row.external_media_id)
        kept = media[index] if index < len(media) else None
        if kept is None or kept.content is None:
            if row is attachment:
                raise PermanentError("the delivery as received holds no such file")
            continue
        ticket_services.attachment_content_store(
            attachment=row,
            content=kept.content,
            content_type=kept.mime_type,
            filename=kept.filename,
        )
    return True


def _lifetimes() -> dict[str, timedelta]:
    """Each channel's reference lifetime; an e-mail's files are kept in the delivery as
    received, as long as the raw deliveries are (``RAW_EVENT_RETENTION_DAYS``)."""
    return {
        **MEDIA_REFERENCE_LIFETIME,
        Channel.EMAIL: timedelta(days=max(int(settings.RAW_EVENT_RETENTION_DAYS), 1)),
    }


def reference_lifetime(channel: str) -> timedelta:
    return _lifetimes().get(channel, MEDIA_REFERENCE_LIFETIME_DEFAULT)


def _channel_words(channel: str) -> str:
    try:
        return str(Channel(channel).label)
    except ValueError:
        return channel or "the channel"


def expired_words(channel: str) -> str:
    if channel == Channel.EMAIL:
        return "the e-mail as received was no longer kept when its file was to be stored"
    return f"the file expired at {_channel_words(channel)} before it could be fetched"


def media_error_words(exc: BaseException, *, channel: str = "") -> str:
    """What went wrong, in words an agent may read: an HTTP answer as its status (and the
    Graph API's own message when it gave one), anything else as its message with every
    address left out (a media URL carries its signature; a client error names the URL)."""
    status = getattr(exc, "http_status", None)
    if status:
        words = f"{_channel_words(channel)} answered HTTP {status}"
        detail = _answer_message(getattr(exc, "response_text", ""))
        text = f"{words}: {detail}" if detail else words
    else:
        text = str(exc) or type(exc).__name__
    text = _WITH_QUERY.sub("<address>", _URL.sub("<address>", text))
    text = " ".join(text.split())
    return text if len(text) <= ERROR_WORDS_MAX else text[: ERROR_WORDS_MAX - 1] + "…"


def _answer_message(text: str) -> str:
    """The ``error.message`` of a Graph-style JSON error answer, else nothing."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else ""


def _expired(attachment: Attachment, now: datetime) -> bool:
    return attachment.created_at < now - reference_lifetime(attachment.message.channel)


def attachment_download(*, attachment_id: int) -> bool:
    """Fetch a referenced attachment through its channel adapter and store it. Returns
    whether it stored the file now.

    Only a ``pending`` attachment is fetched, by one task at a time (a lease: the sweep may
    queue one whose first task is still waiting in a backed-up queue); one past its
    channel's reference lifetime is marked failed without a request. Failures raise
    (``RetryableError``, ``PermanentError``): the task records them.

    Adapters download only from their channel's media hosts and stop past
    ``CHANNELS_MEDIA_MAX_BYTES`` (``adapters.base.media_download``); the size is checked
    again here so that no adapter can store more.
    """
    lease: Lease | None = Lease(
        DOWNLOAD_LEASE.format(attachment_id=attachment_id), DOWNLOAD_LEASE_SECONDS
    )
    try:
        taken = lease is not None and lease.take()
    except RedisError:
        logger.warning("No lease for the download of attachment %s (Redis)", attachment_id)
        lease, taken = None, True
    if not taken:
        return False  # another task is downloading it
    try:
        return _download(attachment_id)
    finally:
        if lease is not None:
            lease.release()


def _download(attachment_id: int) -> bool:
    now = timezone.now()
    claimed = (
        Attachment.objects.filter(pk=attachment_id, download_status=DownloadStatus.PENDING, file="")
        .exclude(external_media_id="", external_url="")  # erased: deleted after commit
        .update(download_attempted_at=now)
    )
    if not claimed:
        return False  # stored, failed, erased or gone
    attachment = Attachment.objects.select_related("message__ticket").get(pk=attachment_id)
    if _expired(attachment, now):
        ticket_services.attachment_download_fail(
            attachment_id=attachment_id, error=expired_words(attachment.message.channel)
        )
        return False
    if attachment.external_media_id.startswith(KEPT_PREFIX):
        # received with its delivery (bounded there: an e-mail's size limit), not fetched
        return _kept_media_store(attachment)
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


def attachment_download_give_up(
    *, attachment_id: int, exc: BaseException, attempts: int | None = None
) -> bool:
    """Record that an attachment's download failed for good: a permanent error, or the
    last retry's error (``attempts`` made). The reason is kept in words
    (``media_error_words``); the message stays as it is. Returns whether it was recorded
    (False when the file was stored meanwhile or the attachment is gone)."""
    attachment = Attachment.objects.filter(pk=attachment_id).select_related("message").first()
    if attachment is None:
        return False
    channel = attachment.message.channel
    words = media_error_words(exc, channel=channel)
    if attempts is not None and isinstance(exc, RetryableError):
        words = f"gave up after {attempts} attempts: {words}"
    recorded = ticket_services.attachment_download_fail(attachment_id=attachment_id, error=words)
    if recorded:
        logger.warning("Media download of attachment %s failed for good: %s", attachment_id, words)
    return recorded


class DownloadsRedriven(NamedTuple):
    """What ``attachment_downloads_redrive`` did with the attachments it was given."""

    queued: int  # failed, reset to pending and queued again
    expired: int  # failed, past their channel's reference lifetime: left failed
    skipped: int  # not failed (pending, stored, gone) or nothing to fetch: left alone


def attachment_downloads_redrive(*, attachment_ids: Iterable[int], actor: Any) -> DownloadsRedriven:
    """A supervisor downloads failed attachments again (the admin's "Download again"),
    once what made them fail is fixed (the channel's outage, its account): each one
    ``failed`` that has a reference to fetch and is within its channel's reference
    lifetime is ``pending`` again, its error cleared, and queued after the commit as a new
    download is (a new task: its retries start again), each audited
    (``attachment.download_redrive``). Its ``download_attempted_at`` is set as the sweep
    sets it when it queues one: the sweep leaves it to that task for a while, then queues
    it again if the broker lost it. One past its lifetime is left ``failed`` (the channel
    no longer has the file); one not failed, or with nothing to fetch, is left alone."""
    ids = sorted({int(pk) for pk in attachment_ids})
    now = timezone.now()
    with transaction.atomic():
        failed = list(
            Attachment.objects.select_for_update(of=("self",))
            .filter(pk__in=ids, download_status=DownloadStatus.FAILED, file="")
            .exclude(external_media_id="", external_url="")
            .exclude(download_error=NOTHING_TO_FETCH)
            .select_related("message")
            .order_by("pk")
        )
        due = [attachment for attachment in failed if not _expired(attachment, now)]
        if due:
            queued = [attachment.pk for attachment in due]
            Attachment.objects.filter(pk__in=queued).update(
                download_status=DownloadStatus.PENDING,
                download_error="",
                download_attempted_at=now,
            )
            for attachment in due:
                audit_log_record(
                    actor=actor,
                    action="attachment.download_redrive",
                    object_type="attachment",
                    object_id=attachment.pk,
                    details={
                        "channel": attachment.message.channel,
                        "error": attachment.download_error,
                    },
                )
            transaction.on_commit(lambda: _enqueue_downloads(queued))
    return DownloadsRedriven(
        queued=len(due), expired=len(failed) - len(due), skipped=len(ids) - len(failed)
    )


def attachment_downloads_sweep(*, stale_seconds: float = MEDIA_SWEEP_STALE_SECONDS) -> int:
    """Pending downloads nobody is fetching (their task was never queued: the broker was
    down at the commit; or it was lost: a worker killed, the broker dropped it).

    Those past their channel's reference lifetime are marked failed ("the file expired at
    WhatsApp before it could be fetched"); the others, pending ``stale_seconds`` after their
    message and after their last attempt started, are claimed (their ``download_attempted_at``
    set, rows locked with ``SKIP LOCKED`` so two sweeps never take the same one) and queued
    again after commit. ``MEDIA_SWEEP_BATCH`` of each per run. Idempotent; the download
    itself runs one at a time per attachment. Returns how many it queued or marked failed.
    The beat runs it every minute; a worker with 0 each time it (re)connects to the broker
    (``support.celery``)."""
    now = timezone.now()
    expired = _expired_fail(now)
    stale = now - timedelta(seconds=stale_seconds)
    with transaction.atomic():
        due = list(
            Attachment.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(download_status=DownloadStatus.PENDING, created_at__lte=stale)
            .exclude(download_attempted_at__gt=stale)
            .exclude(external_media_id="", external_url="")  # erased
            .exclude(_expired_q(now))  # left to the next sweep's first step
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)[:MEDIA_SWEEP_BATCH]
        )
        if due:
            Attachment.objects.filter(pk__in=due).update(download_attempted_at=now)
            transaction.on_commit(lambda: _enqueue_downloads(due))
    if due or expired:
        logger.warning(
            "Media sweep: %d download(s) queued again, %d marked failed (expired)",
            len(due),
            expired,
        )
    return len(due) + expired


def _expired_q(now: datetime) -> Q:
    """Attachments past their channel's reference lifetime."""
    lifetimes = _lifetimes()
    known = list(lifetimes)
    past = Q(created_at__lt=now - MEDIA_REFERENCE_LIFETIME_DEFAULT) & ~Q(message__channel__in=known)
    for channel, lifetime in lifetimes.items():
        past |= Q(message__channel=channel, created_at__lt=now - lifetime)
    return past


def _expired_fail(now: datetime) -> int:
    """Mark failed the pending downloads past their channel's reference lifetime."""
    with transaction.atomic():
        rows = list(
            Attachment.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_expired_q(now), download_status=DownloadStatus.PENDING, file="")
            .select_related("message")
            .order_by("created_at", "pk")[:MEDIA_SWEEP_BATCH]
        )
        for attachment in rows:
            attachment.download_status = DownloadStatus.FAILED
            attachment.download_error = expired_words(attachment.message.channel)
            attachment.save(update_fields=["download_status", "download_error"])
    return len(rows)
