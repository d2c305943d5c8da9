"""The routing app's widget on the supervisor dashboard (see ``dashboard/widgets.py``)."""

from __future__ import annotations

from dashboard.widgets import DashboardFilters, Stat, Widget, WidgetData, register_widget
from routing.stats import routing_quality


def _pct(ratio: float | None) -> float | None:
    return round(ratio * 100, 1) if ratio is not None else None


def routing_data(filters: DashboardFilters) -> WidgetData:
    figures = routing_quality(
        start=filters.start,
        end=filters.end,
        bucket=filters.bucket,
        team_ids=filters.team_ids,
        channels=filters.channels,
    )
    fmt = "%m-%d %H:00" if filters.bucket == "hour" else "%Y-%m-%d"
    rows = []
    for at, b in figures["buckets"].items():
        rows.append(
            [
                at.strftime(fmt),
                b["decisions"],
                _pct(b["review"] / b["decisions"]) if b["decisions"] else None,
                _pct(b["out_of_scope"] / b["scored"]) if b["scored"] else None,
                _pct(b["accepted"] / b["verdicts"]) if b["verdicts"] else None,
            ]
        )
    cost = figures["cost_per_ticket_usd"]
    tokens = figures["tokens_per_ticket"]
    return WidgetData(
        columns=[
            "Hour" if filters.bucket == "hour" else "Day",
            "Decisions",
            "Review rate",
            "Unlike any trained intent",
            "Accuracy",
        ],
        rows=rows,
        chart="lines",
        series=["Review rate", "Unlike any trained intent", "Accuracy"],
        unit="%",
        stats=[
            Stat(
                "Routing accuracy",
                _pct(figures["accuracy"]),
                "%",
                f"{figures['verdicts']} verdicts",
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
            Stat("Cost per ticket", round(cost, 6) if cost is not None else None, "$"),
            Stat("Tokens per ticket", round(tokens) if tokens is not None else None),
        ],
        note="Accuracy: share of people's verdicts that accepted the decision.",
    )


register_widget(
    Widget(
        name="routing",
        title="Routing accuracy, review rate and cost",
        data=routing_data,
        order=70,
        live_events=("routing.",),
    )
)
