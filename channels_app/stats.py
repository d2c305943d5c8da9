"""Read-only figures of the webhook intake for the supervisor dashboard (no writes)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count

from channels_app.models import InboundEvent, InboundStatus

#: Inbound deliveries that are neither processed nor dropped: a person decides the first
#: two (re-process, release, close), the retries run by themselves.
INBOUND_WAITING = (InboundStatus.DEAD, InboundStatus.QUARANTINED, InboundStatus.RETRYING)


def inbound_waiting_by_channel(
    *, channels: Iterable[str] | None = None
) -> dict[str, dict[str, int]]:
    """Inbound webhook deliveries dead, quarantined or retrying now, whenever they came,
    by channel: ``{channel: {status: n}}`` (each status present). One aggregate over
    ``inbound_status_idx`` (status, received_at); counts only, never a body or header."""
    qs = InboundEvent.objects.filter(status__in=INBOUND_WAITING)
    if channels:
        qs = qs.filter(channel__in=list(channels))
    out: dict[str, dict[str, int]] = {}
    for row in qs.values("channel", "status").annotate(n=Count("pk")).order_by():
        counts = out.setdefault(row["channel"], {s.value: 0 for s in INBOUND_WAITING})
        counts[row["status"]] = row["n"]
    return out
