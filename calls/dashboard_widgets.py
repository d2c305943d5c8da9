"""The calls app's widget on the supervisor dashboard (see ``dashboard/widgets.py``)."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from calls.models import EventStatus
from calls.stats import call_pipeline_health
from dashboard.widgets import DashboardFilters, Stat, Widget, WidgetData, register_widget
from tickets.models import Channel


def _dead_letters_url() -> str:
    """The admin list of the failed call records (where a supervisor applies them again or
    closes them), "" without the admin."""
    try:
        url = reverse("admin:calls_callevent_changelist")
    except NoReverseMatch:
        return ""
    return f"{url}?status__exact={EventStatus.FAILED}"


def calls_data(filters: DashboardFilters) -> WidgetData:
    figures = call_pipeline_health(start=filters.start, end=filters.end)
    if filters.channels and Channel.PHONE not in filters.channels:
        note = "The channel filter leaves out phone: calls are shown for context."
    else:
        note = "All calls (the team filter does not apply to the call pipeline)."
    ratio = figures["failed_ratio"]
    return WidgetData(
        columns=["Pipeline status", "Calls"],
        rows=[[row["label"], row["calls"]] for row in figures["by_status"]],
        chart="bars",
        series=["Calls"],
        stats=[
            Stat("Calls", figures["calls"]),
            Stat("Failed", round(ratio * 100, 1) if ratio is not None else None, "%"),
            Stat(
                "Records awaiting redelivery",
                figures["events_failed"],
                hint="now: dead letters, however old; apply again or close",
                url=_dead_letters_url(),
            ),
            Stat("Analyses produced", figures["analytics"]),
        ],
        note=note + " Records awaiting redelivery: now, whatever the range.",
    )


register_widget(
    Widget(
        name="calls",
        title="Call pipeline health",
        data=calls_data,
        order=80,
        live_events=("call.",),
    )
)
