"""The calls app's widget on the supervisor dashboard (see ``dashboard/widgets.py``)."""

from __future__ import annotations

from calls.stats import call_pipeline_health
from dashboard.widgets import DashboardFilters, Stat, Widget, WidgetData, register_widget
from tickets.models import Channel


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
            Stat("Records awaiting redelivery", figures["events_failed"], "", "dead letters"),
            Stat("Analyses produced", figures["analytics"]),
        ],
        note=note,
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
