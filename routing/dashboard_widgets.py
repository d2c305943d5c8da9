"""The routing app's widget on the supervisor dashboard (see ``dashboard/widgets.py``)."""

from __future__ import annotations

from dashboard.widgets import (
    DashboardFilters,
    Stat,
    Widget,
    WidgetData,
    bucket_label,
    register_widget,
)
from routing.stats import (
    routing_confidence_histogram,
    routing_decisions_by_priority,
    routing_decisions_by_team,
    routing_demo_decisions,
    routing_processing_times,
    routing_quality,
)


def _pct(ratio: float | None) -> float | None:
    return round(ratio * 100, 1) if ratio is not None else None


def _bucket_column(filters: DashboardFilters) -> str:
    """The first column's name (its cells: ``dashboard.widgets.bucket_label``)."""
    return "Hour" if filters.bucket == "hour" else "Day"


def _share(part: int, whole: int) -> float | None:
    return _pct(part / whole) if whole else None


def _demo_marked(data: WidgetData, filters: DashboardFilters) -> WidgetData:
    """``data`` with a "Demo data" figure first and a note, when demo decisions (made up by
    the demo loader, ``RoutingDecision.demo``) are among those it counts; as it is
    otherwise."""
    demo = routing_demo_decisions(
        start=filters.start, end=filters.end, team_ids=filters.team_ids, channels=filters.channels
    )
    if demo:
        data.stats.insert(
            0,
            Stat(
                "Demo data",
                demo,
                "decisions",
                "made up by the demo loader (no AI provider was called); counted here",
            ),
        )
        data.note = (
            f"Demo data: {demo} of the decisions counted here were made up by the demo "
            "loader, with their provider, cost and verdicts. " + data.note
        ).strip()
    return data


def routing_data(filters: DashboardFilters) -> WidgetData:
    figures = routing_quality(
        start=filters.start,
        end=filters.end,
        bucket=filters.bucket,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    column = _bucket_column(filters)
    rows = []
    for at, b in figures["buckets"].items():
        rows.append(
            [
                bucket_label(at, filters.bucket),
                b["decisions"],
                _pct(b["review"] / b["decisions"]) if b["decisions"] else None,
                _pct(b["out_of_scope"] / b["scored"]) if b["scored"] else None,
                _pct(b["accepted"] / b["verdicts"]) if b["verdicts"] else None,
                _pct(b["provider_errors"] / b["decisions"]) if b["decisions"] else None,
            ]
        )
    cost = figures["cost_per_ticket_usd"]
    tokens = figures["tokens_per_ticket"]
    data = WidgetData(
        columns=[
            column,
            "Decisions",
            "Review rate",
            "Unlike any trained intent",
            "Accepted by reviewers",
            "Provider errors",
        ],
        rows=rows,
        chart="lines",
        series=[
            "Review rate",
            "Unlike any trained intent",
            "Accepted by reviewers",
            "Provider errors",
        ],
        unit="%",
        stats=[
            # not an accuracy: only decisions a person judged have a verdict, and most
            # applied decisions are never judged
            Stat(
                "Routing accepted by reviewers",
                _pct(figures["accuracy"]),
                "%",
                f"of {figures['verdicts']} verdicts; decisions nobody reviewed not counted",
            ),
            Stat(
                "Manual review rate",
                _pct(figures["review_rate"]),
                "%",
                f"{figures['decisions']} decisions",
            ),
            Stat(
                "Unlike any trained intent",
                _pct(figures["out_of_scope_rate"]),
                "%",
                (
                    f"of {figures['scored_decisions']} decisions; rising: customers ask "
                    "something new"
                    if figures["scored_decisions"]
                    else "the active router has no detector (train one on your tickets)"
                ),
            ),
            Stat(
                "Provider error rate",
                _pct(figures["provider_error_rate"]),
                "%",
                f"{figures['provider_errors']} decisions fell back to the local router",
            ),
            Stat("Cost per ticket", round(cost, 6) if cost is not None else None, "$"),
            Stat("Tokens per ticket", round(tokens) if tokens is not None else None),
        ],
        note=(
            "Accepted by reviewers: share of people's verdicts that accepted the decision; "
            "decisions applied without a review have no verdict and are not counted, so "
            "this is not the accuracy of all routing. Provider errors: share of decisions "
            "whose AI provider failed, so the local router decided instead."
        ),
    )
    return _demo_marked(data, filters)


register_widget(
    Widget(
        name="routing",
        title="Routing accepted by reviewers, review rate, provider errors and cost",
        data=routing_data,
        order=70,
        live_events=("routing.",),
        lazy=True,
    )
)


def _ms(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def routing_time_data(filters: DashboardFilters) -> WidgetData:
    figures = routing_processing_times(
        start=filters.start,
        end=filters.end,
        bucket=filters.bucket,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    column = _bucket_column(filters)
    rows = [
        [bucket_label(at, filters.bucket), b["decisions"], _ms(b["average_ms"]), _ms(b["p95_ms"])]
        for at, b in figures["buckets"].items()
    ]
    per_hour = figures["per_hour"]
    data = WidgetData(
        columns=[column, "Decisions", "Average", "p95"],
        rows=rows,
        chart="lines",
        series=["Average", "p95"],
        unit="ms",
        stats=[
            Stat(
                "Processing rate",
                round(per_hour, 1) if per_hour is not None else None,
                "per hour",
                f"{figures['decisions']} decisions",
            ),
            Stat("Average processing time", _ms(figures["average_ms"]), "ms"),
            Stat("p95 processing time", _ms(figures["p95_ms"]), "ms"),
        ],
        note="Time the router took per decision: the AI provider's call and its tools.",
    )
    return _demo_marked(data, filters)


def routing_confidence_data(filters: DashboardFilters) -> WidgetData:
    figures = routing_confidence_histogram(
        start=filters.start,
        end=filters.end,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    rows = [
        [
            f"{b['low']:.0%}–{b['high']:.0%}",
            b["decisions"],
            b["below_threshold"],
            b["decisions"] - b["below_threshold"],
        ]
        for b in figures["bins"]
    ]
    threshold = f"{figures['threshold']:.0%}"
    n = figures["decisions"]
    data = WidgetData(
        columns=["Confidence", "Decisions", "Below review threshold", "At or above it"],
        rows=rows,
        chart="stacked",
        series=["Below review threshold", "At or above it"],
        stats=[
            Stat("Average confidence", _pct(figures["average"]), "%"),
            Stat(
                "Below review threshold",
                _share(figures["below_threshold"], n),
                "%",
                f"of {n} decisions, under {threshold}",
            ),
        ],
        note=(
            f"Review threshold {threshold} (ROUTING_REVIEW_THRESHOLD): a decision less "
            "confident than that goes to manual review. Confidence is the classifier's "
            "calibrated probability for every provider, so the average is of measured "
            "figures: an AI model's own stated confidence is not in it."
        ),
    )
    return _demo_marked(data, filters)


def routing_teams_data(filters: DashboardFilters) -> WidgetData:
    teams = routing_decisions_by_team(
        start=filters.start,
        end=filters.end,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    n = sum(t["decisions"] for t in teams)
    rows = [
        [t["team"] or "No team", t["decisions"], _share(t["decisions"], n), t["review"]]
        for t in teams
    ]
    data = WidgetData(
        columns=["Team", "Decisions", "Share (%)", "Sent to review"],
        rows=rows,
        chart="bars",
        series=["Decisions"],
        note="The team the router chose, whether applied or sent to review.",
    )
    return _demo_marked(data, filters)


def routing_priority_data(filters: DashboardFilters) -> WidgetData:
    priorities = routing_decisions_by_priority(
        start=filters.start,
        end=filters.end,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    n = sum(p["decisions"] for p in priorities)
    rows = [
        [p["label"], p["decisions"], _share(p["decisions"], n), p["review"]] for p in priorities
    ]
    data = WidgetData(
        columns=["Priority", "Decisions", "Share (%)", "Sent to review"],
        rows=rows,
        chart="bars",
        series=["Decisions"],
        note="The priority the router chose, whether applied or sent to review.",
    )
    return _demo_marked(data, filters)


register_widget(
    Widget(
        name="routing_time",
        title="Routing processing time",
        data=routing_time_data,
        order=71,
        live_events=("routing.",),
        lazy=True,
    )
)
register_widget(
    Widget(
        name="routing_confidence",
        title="Routing confidence distribution",
        data=routing_confidence_data,
        order=72,
        live_events=("routing.",),
        lazy=True,
    )
)
register_widget(
    Widget(
        name="routing_teams",
        title="Routing decisions by team",
        data=routing_teams_data,
        order=73,
        live_events=("routing.",),
        lazy=True,
    )
)
register_widget(
    Widget(
        name="routing_priority",
        title="Routing decisions by priority",
        data=routing_priority_data,
        order=74,
        live_events=("routing.",),
        lazy=True,
    )
)
