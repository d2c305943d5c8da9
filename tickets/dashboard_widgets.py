"""The tickets app's widgets on the supervisor dashboard (discovered by the dashboard
app; see ``dashboard/widgets.py``). Interface layer: formats the selectors' figures."""

from __future__ import annotations

from typing import Any

from dashboard.widgets import (
    DashboardFilters,
    Stat,
    Widget,
    WidgetData,
    bucket_label,
    register_widget,
)
from tickets import stats
from tickets.context.stats import csat_summary
from tickets.online import agents_online_ids
from tickets.selectors import sla_attainment

TICKET_EVENTS = ("ticket.",)


def _hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 1) if seconds is not None else None


def backlog_data(filters: DashboardFilters) -> WidgetData:
    rows = stats.ticket_backlog(team_ids=filters.team_ids, channels=filters.channels)
    total = sum(r["total"] for r in rows)
    return WidgetData(
        columns=["Team", "New", "Open", "Pending", "Total"],
        rows=[[r["team"], r["new"], r["open"], r["pending"], r["total"]] for r in rows],
        chart="stacked",
        series=["New", "Open", "Pending"],
        stats=[
            Stat("Open tickets now", total),
            Stat("New (untouched)", sum(r["new"] for r in rows)),
        ],
        note="Now, whatever the date range.",
    )


def flow_data(filters: DashboardFilters) -> WidgetData:
    rows = stats.ticket_flow(
        start=filters.start,
        end=filters.end,
        bucket=filters.bucket,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    return WidgetData(
        columns=["Hour" if filters.bucket == "hour" else "Day", "Created", "Resolved"],
        rows=[[bucket_label(r["at"], filters.bucket), r["created"], r["resolved"]] for r in rows],
        chart="lines",
        series=["Created", "Resolved"],
        stats=[
            Stat("Created", sum(r["created"] for r in rows)),
            Stat("Resolved", sum(r["resolved"] for r in rows), hint="or closed unresolved"),
        ],
        note=(
            "Resolved: tickets resolved in the range, or closed in it without being "
            "resolved; a ticket resolved and then closed counts once, when resolved."
        ),
    )


def channel_data(filters: DashboardFilters) -> WidgetData:
    rows = stats.ticket_volume_by_channel(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    return WidgetData(
        columns=["Channel", "Tickets", "Still open"],
        rows=[[r["label"], r["tickets"], r["open"]] for r in rows],
        chart="bars",
        series=["Tickets"],
    )


def response_times_data(filters: DashboardFilters) -> WidgetData:
    figures = stats.ticket_response_times(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    overall = figures["overall"]
    columns = [
        "Team",
        "First response median",
        "First response p90",
        "Resolution median",
        "Resolution p90",
        "Tickets",
    ]
    rows: list[list[Any]] = [
        [
            r["team"],
            _hours(r["first_response_p50"]),
            _hours(r["first_response_p90"]),
            _hours(r["resolution_p50"]),
            _hours(r["resolution_p90"]),
            r["tickets"],
        ]
        for r in figures["teams"]
    ]
    return WidgetData(
        columns=columns,
        rows=rows,
        chart="bars",
        series=columns[1:5],
        unit="h",
        stats=[
            Stat("First response, median", _hours(overall["first_response_p50"]), "h"),
            Stat("First response, p90", _hours(overall["first_response_p90"]), "h"),
            Stat("Resolution, median", _hours(overall["resolution_p50"]), "h"),
            Stat("Resolution, p90", _hours(overall["resolution_p90"]), "h"),
        ],
        note=(
            f"Tickets created in the range: {overall['answered']} of {overall['tickets']} "
            f"answered, {overall['resolved']} resolved (or closed without being resolved: "
            "the resolution time runs to the close)."
        ),
    )


def csat_data(filters: DashboardFilters) -> WidgetData:
    summary = csat_summary(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    ratio = summary["satisfied_ratio"]
    return WidgetData(
        columns=["Rating", "Answers"],
        rows=[[f"{r} ★", n] for r, n in sorted(summary["ratings"].items(), reverse=True)],
        chart="bars",
        series=["Answers"],
        stats=[
            Stat("CSAT (4–5 ★)", round(ratio * 100, 1) if ratio is not None else None, "%"),
            Stat(
                "Average rating",
                round(summary["average"], 2) if summary["average"] is not None else None,
            ),
            Stat("Answers", summary["responses"]),
        ],
    )


def agents_data(filters: DashboardFilters) -> WidgetData:
    online = agents_online_ids()
    load = stats.agent_load(
        start=filters.start,
        end=filters.end,
        online_ids=online,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    rows, people = load["rows"], load["people"]
    note = "Online: the workbench is open in a browser (heartbeat within 2.5 min)."
    first = "Agent"
    if len(rows) < people:
        # the table, its JSON and its CSV say so (the CSV has the header, not the note)
        first = f"Agent (showing {len(rows)} of {people})"
        note = (
            f"Showing {len(rows)} of {people} agents: online first, then the busiest; the "
            "figures above count everyone. " + note
        )
    return WidgetData(
        columns=[first, "Online", "Open tickets", "Resolved in range"],
        rows=[
            [r["name"], "online" if r["online"] else "offline", r["open"], r["resolved"]]
            for r in rows
        ],
        chart="bars",
        series=["Open tickets"],
        stats=[
            Stat("Online now", load["online"]),
            Stat("Open tickets assigned", load["open"]),
        ],
        note=note,
    )


register_widget(
    Widget(
        name="backlog",
        title="Open backlog by team and status",
        data=backlog_data,
        order=10,
        live_events=TICKET_EVENTS,
    )
)
register_widget(
    Widget(
        name="flow",
        title="New vs resolved",
        data=flow_data,
        order=20,
        live_events=TICKET_EVENTS,
        wide=True,
    )
)
register_widget(
    Widget(
        name="channels",
        title="Volume by channel",
        data=channel_data,
        order=30,
        live_events=("ticket.created",),
    )
)
register_widget(
    Widget(
        name="response_times",
        title="First response and resolution time",
        data=response_times_data,
        order=40,
        description="Hours from the ticket's creation.",
        lazy=True,
    )
)


def _percent(part: dict[str, Any]) -> float | None:
    ratio = part["attainment"]
    return round(100 * ratio, 1) if ratio is not None else None


def sla_data(filters: DashboardFilters) -> WidgetData:
    figures = sla_attainment(
        start=filters.start,
        end=filters.end,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    first, resolution = figures["first_response"], figures["resolution"]
    return WidgetData(
        columns=["Target", "Met", "Breached", "Attainment (%)"],
        rows=[
            ["First response", first["met"], first["breached"], _percent(first)],
            ["Resolution", resolution["met"], resolution["breached"], _percent(resolution)],
        ],
        chart="stacked",
        series=["Met", "Breached"],
        stats=[
            Stat("First response met", _percent(first), "%"),
            Stat("Resolution met", _percent(resolution), "%"),
            Stat("Breached now", figures["open_breached"], hint="open tickets past due"),
            Stat("At risk", figures["open_at_risk"], hint="due within the warning window"),
        ],
        note="Met/breached: targets reached in the range; breached now / at risk: open tickets.",
    )


register_widget(
    Widget(
        name="sla",
        title="SLA attainment",
        data=sla_data,
        order=50,
        live_events=("sla.", "ticket."),
        lazy=True,
        description="First-response and resolution targets met against the SLA policies.",
    )
)
register_widget(Widget(name="csat", title="Customer satisfaction (CSAT)", data=csat_data, order=60))
register_widget(
    Widget(
        name="agents",
        title="Agents online and their load",
        data=agents_data,
        order=90,
        live_events=TICKET_EVENTS,
        lazy=True,
    )
)
