"""The channels' widget on the supervisor dashboard (see ``dashboard/widgets.py``): what the
text channels' intake and delivery kept instead of losing, and which needs a person.

Counts only (statuses, channels, delivery kinds): never a message's text, an address or a
payload, though the dashboard is for supervisors already.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import NoReverseMatch, reverse

from channels_app.models import InboundStatus
from channels_app.stats import inbound_waiting_by_channel
from dashboard.widgets import DashboardFilters, Stat, Widget, WidgetData, register_widget
from knowledge.selectors import object_events_failed_count
from support.delivery.selectors import dead_letters_by_kind
from support.models import DeliveryStatus
from support.selectors import outbox_failed_count
from tickets.context.selectors import context_dead_letters_by_kind
from tickets.models import Channel, DeliveryState, Direction, DownloadStatus, MessageKind
from tickets.stats import attachment_downloads_by_channel, reply_failures_by_channel

COLUMNS = [
    "Channel or delivery kind",
    "Inbound dead letters",
    "Quarantined",
    "Inbound retrying",
    "Replies failed",
    "Media failed",
    "Media pending",
    "Delivery dead letters",
]
#: Listed whether or not anything is waiting (a row of zeros says nothing was lost); the
#: phone has its own widget (calls), and another channel is listed when it has a figure.
TEXT_CHANNELS = tuple(c.value for c in Channel if c not in (Channel.PHONE, Channel.API))
#: What a person has to act on (the bars); retries and pending downloads run by themselves.
SERIES = [
    "Inbound dead letters",
    "Quarantined",
    "Replies failed",
    "Media failed",
    "Delivery dead letters",
]


def _admin_list(model: str, params: list[tuple[str, str]]) -> str:
    """The admin changelist of ``model`` ("app_model") filtered by ``params`` with its own
    list filters ("" when that admin is not installed)."""
    try:
        url = reverse(f"admin:{model}_changelist")
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(params)}" if params else url


def _channel_params(filters: DashboardFilters) -> list[tuple[str, str]]:
    """The dashboard's channels as the admin's: its own filter for one (shown chosen in
    the sidebar), ``channel__in`` for several."""
    if not filters.channels:
        return []
    if len(filters.channels) == 1:
        return [("channel__exact", filters.channels[0])]
    return [("channel__in", ",".join(filters.channels))]


def _window_params(field: str, filters: DashboardFilters) -> list[tuple[str, str]]:
    return [
        (f"{field}__gte", filters.start.isoformat()),
        (f"{field}__lt", filters.end.isoformat()),
    ]


def health_data(filters: DashboardFilters) -> WidgetData:
    inbound = inbound_waiting_by_channel(channels=filters.channels)
    replies = reply_failures_by_channel(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    media = attachment_downloads_by_channel(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    dead_deliveries = dead_letters_by_kind()
    kb_failed = object_events_failed_count()
    outbox_failed = outbox_failed_count()
    context_given_up = sum(context_dead_letters_by_kind().values())

    labels = dict(Channel.choices)
    shown = [c for c in TEXT_CHANNELS if not filters.channels or c in filters.channels]
    shown += sorted((set(inbound) | set(replies) | set(media)) - set(shown))
    rows: list[list[int | str | None]] = []
    for channel in shown:
        waiting = inbound.get(channel, {})
        files = media.get(channel, {})
        rows.append(
            [
                labels.get(channel, channel),
                waiting.get(InboundStatus.DEAD, 0),
                waiting.get(InboundStatus.QUARANTINED, 0),
                waiting.get(InboundStatus.RETRYING, 0),
                replies.get(channel, 0),
                files.get("failed", 0),
                files.get("pending", 0),
                None,
            ]
        )
    for kind, n in sorted(dead_deliveries.items()):
        rows.append([f"Outbound: {kind}", None, None, None, None, None, None, n])

    def total(column: str) -> int:
        i = COLUMNS.index(column)
        return sum(value for row in rows if isinstance(value := row[i], int))

    by_channel = _channel_params(filters)
    inbound_url = "channels_app_inboundevent"
    stats = [
        Stat(
            "Inbound dead letters",
            total("Inbound dead letters"),
            hint="now: re-process or close",
            url=_admin_list(inbound_url, [("status__exact", InboundStatus.DEAD), *by_channel]),
        ),
        Stat(
            "Quarantined e-mail",
            total("Quarantined"),
            hint="now: release or close",
            url=_admin_list(
                inbound_url, [("status__exact", InboundStatus.QUARANTINED), *by_channel]
            ),
        ),
        Stat(
            "Replies failed",
            total("Replies failed"),
            hint="in the range",
            url=_admin_list(
                "tickets_message",
                [
                    ("delivery_status__exact", DeliveryState.FAILED),
                    ("direction__exact", Direction.OUTBOUND),
                    ("kind__exact", MessageKind.PUBLIC),
                    *by_channel,
                    *_window_params("failed_at", filters),
                ],
            ),
        ),
        Stat(
            "Media downloads failed",
            total("Media failed"),
            hint=f"in the range; {total('Media pending')} pending now",
            url=_admin_list(
                "tickets_attachment",
                [
                    ("download_status__exact", DownloadStatus.FAILED),
                    *_window_params("created_at", filters),
                ],
            ),
        ),
        Stat(
            "KB events failed",
            kb_failed,
            hint="now: re-drive",
            url=_admin_list("knowledge_objectevent", [("state", "failed")]),
        ),
        Stat(
            "Delivery dead letters",
            total("Delivery dead letters"),
            hint="now, every kind: re-drive",
            url=_admin_list("delivery_delivery", [("status__exact", DeliveryStatus.DEAD)]),
        ),
        Stat(
            "Outbox events failed",
            outbox_failed,
            hint="now: the relay gave up; re-drive",
            url=_admin_list("support_outboxevent", [("failed_at__isempty", "0")]),
        ),
        Stat(
            "Customer-context work given up",
            context_given_up,
            hint="now: history entries, surveys; re-drive",
            url=_admin_list("tickets_contextdeadletter", []),
        ),
    ]
    return WidgetData(
        columns=COLUMNS,
        rows=rows,
        chart="stacked",
        series=SERIES,
        stats=stats,
        note=(
            "Now, whatever the range: inbound dead letters, quarantined e-mail and retries, "
            "media downloads pending, knowledge-base S3 events failed, outbound delivery "
            "dead letters, outbox events the relay gave up on and customer-context work "
            "given up (history entries, satisfaction surveys) (every one still waiting, "
            "however old). In the range: replies "
            "whose sending failed (when it failed) and media that could not be downloaded "
            "(when it came). The channel filter applies to inbound events, replies and "
            "media; the team filter (the ticket's team) to replies and media only. "
            "Delivery dead letters are listed by kind, and knowledge-base and outbox "
            "events and customer-context work have no channel: neither filter applies to "
            "them. Each figure opens the "
            "admin list of "
            "those rows (by channel where the admin has that filter, never by team)."
        ),
    )


register_widget(
    Widget(
        name="intake_health",
        title="Intake and delivery health",
        data=health_data,
        order=82,
        live_events=("message.delivery_updated",),
        wide=True,
        # Six small index-bound queries, but the page's own budget (20 queries, the
        # first rows' widgets) is full: loaded from its fragment right after the page.
        lazy=True,
    )
)
