"""Webhook intake and media download metrics for ``GET /metrics`` (registered in
``ChannelsAppConfig.ready``)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import Metric

from channels_app.models import InboundEvent, InboundStatus
from support.metrics import age_seconds, gauge, window_start
from tickets.models import Attachment, DownloadStatus

#: Received and not yet turned into messages (a worker will pick them up).
WAITING = (InboundStatus.RECEIVED, InboundStatus.RETRYING)
#: Kept and waiting for a person: dead letters (retries spent) and e-mails quarantined by
#: CHANNELS_EMAIL_AUTH_POLICY=reject, until re-driven, released or closed.
DEAD_LETTERS = (InboundStatus.DEAD, InboundStatus.QUARANTINED)


def intake_metrics() -> Iterator[Metric]:
    intake = gauge(
        "webhook_events",
        "Inbound webhook events received in the window, by channel and outcome "
        "(received, processed, ignored, malformed, retrying, dead, quarantined, closed).",
        ["channel", "outcome"],
    )
    rows = (
        InboundEvent.objects.filter(received_at__gte=window_start())
        .values("channel", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        intake.add_metric([row["channel"], row["status"]], row["n"])
    yield intake

    # A level, not a window (as support_call_events_failed and
    # support_deliveries_dead_letters): an alert rule over the window's "dead" outcome
    # resolved once the event's received_at left the rule's window, with the event still
    # dead. One aggregate over inbound_status_idx (status, received_at): the few dead or
    # quarantined rows, whenever they came.
    dead = gauge(
        "inbound_dead_letters",
        "Inbound webhook events waiting for a person now, however long ago they came, by "
        "channel and status: dead (retries spent; re-process or close them) and "
        "quarantined (e-mail sender not verified; release or close them).",
        ["channel", "status"],
    )
    dead_rows = (
        InboundEvent.objects.filter(status__in=DEAD_LETTERS)
        .values("channel", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in dead_rows:
        dead.add_metric([row["channel"], row["status"]], row["n"])
    yield dead

    # One index probe per status on inbound_status_idx (status, received_at).
    oldest = [
        InboundEvent.objects.filter(status=status)
        .order_by("received_at")
        .values_list("received_at", flat=True)
        .first()
        for status in WAITING
    ]
    waiting = [value for value in oldest if value is not None]
    lag = gauge(
        "inbound_processing_lag_seconds",
        "Age of the oldest inbound event received but not yet processed (0: none waiting).",
    )
    lag.add_metric([], age_seconds(min(waiting) if waiting else None))
    yield lag


def media_metrics() -> Iterator[Metric]:
    """Channels' files (attachments recorded by reference, downloaded after commit by
    ``channels_app.services.media``) that have not come: ``failed`` among those received
    in the window (an attachment records no time of failure; a download fails within
    minutes of its arrival), ``pending`` now, whenever they came. Both samples are always
    exported (0 when none), each one count over a partial index (``attachment_failed_idx``,
    ``attachment_pending_idx``)."""
    downloads = gauge(
        "media_downloads",
        "Channels' files not downloaded: failed (received in the window, will not come: "
        "the reason is on the attachment) and pending (now, still to be downloaded).",
        ["status"],
    )
    failed = Attachment.objects.filter(
        download_status=DownloadStatus.FAILED, created_at__gte=window_start()
    ).count()
    pending = Attachment.objects.filter(download_status=DownloadStatus.PENDING).count()
    downloads.add_metric([DownloadStatus.FAILED.value], failed)
    downloads.add_metric([DownloadStatus.PENDING.value], pending)
    yield downloads
