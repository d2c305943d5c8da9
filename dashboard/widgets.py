"""The supervisor dashboard's widget registry (the ticket page's panels, for charts).

The dashboard knows a grid of slots, not the code behind each chart: every app that has
something to show registers a :class:`Widget` from a ``dashboard_widgets.py`` module of
its own, which the dashboard imports at start-up (``DashboardConfig.ready`` discovers
them the way the admin discovers ``admin.py``). A widget's ``data(filters)`` calls that
app's read-only selectors and returns a :class:`WidgetData`: a table (``columns`` +
``rows``, which is also the CSV export, the JSON endpoint's body and the accessible table
fallback) plus how to draw it (``chart``) and optional headline figures (``stats``).

    # myapp/dashboard_widgets.py
    from dashboard.widgets import DashboardFilters, Widget, WidgetData, register_widget
    from myapp.selectors import thing_counts

    def _things(filters: DashboardFilters) -> WidgetData:
        counts = thing_counts(start=filters.start, end=filters.end, team_ids=filters.team_ids)
        return WidgetData(columns=["Thing", "Count"], rows=[[k, v] for k, v in counts],
                          chart="bars", series=["Count"])

    register_widget(Widget(name="things", title="Things", data=_things, order=50))

This module imports no feature app (an import-linter contract keeps it so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.utils import timezone

ChartKind = Literal["bars", "stacked", "lines", "stats"]
CHART_KINDS: tuple[str, ...] = ("bars", "stacked", "lines", "stats")


@dataclass(frozen=True)
class DashboardFilters:
    """What the supervisor chose: a half-open window ``[start, end)`` (aware datetimes),
    and optionally some teams and channels (``None`` means all)."""

    start: datetime
    end: datetime
    team_ids: tuple[int, ...] | None = None
    channels: tuple[str, ...] | None = None

    @property
    def bucket(self) -> Literal["hour", "day"]:
        """Time-series granularity: hours up to two days, days beyond."""
        return "hour" if (self.end - self.start).total_seconds() <= 2 * 86400 else "day"


def bucket_label(at: datetime, bucket: str) -> str:
    """A time bucket's first-column label: its start in the site's time zone, the day
    (``"2026-10-25"``) or the hour (``"10-25 14:00"``). The repeated hour of a fall-back
    night says which it is (``"10-25 02:00 CEST"``, then ``"10-25 02:00 CET"``): the
    selectors keep the two apart (``tickets.stats.local_bucket``), and every widget with a
    time series labels them this one way."""
    local = timezone.localtime(at)
    if bucket != "hour":
        return local.strftime("%Y-%m-%d")
    label = local.strftime("%m-%d %H:00")
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        label += local.strftime(" %Z")
    return label


@dataclass(frozen=True)
class Stat:
    """A headline figure; ``value`` None shows as "—" (no data in the window). ``url``: a
    local path the figure links to (e.g. the admin list of those rows); page only, never
    in the JSON or CSV."""

    label: str
    value: float | int | None
    unit: str = ""  # "%", "h", "min", "$", "" ...
    hint: str = ""
    url: str = ""


@dataclass(frozen=True)
class RowAction:
    """A button on a table row: a CSRF-protected POST to ``url`` (a local path) that comes
    back to the dashboard (``next``). Shown on the page only, never in the JSON or CSV."""

    label: str
    url: str


@dataclass(frozen=True)
class RowLink:
    """A link on a row's first cell (e.g. to the alert or ticket page)."""

    url: str


@dataclass
class WidgetData:
    """One widget's data. ``columns[0]`` labels each row (a team, an hour, a channel);
    ``series`` names the numeric columns the chart draws (all others are table-only)."""

    columns: list[str]
    rows: list[list[Any]]
    chart: ChartKind = "bars"
    series: list[str] = field(default_factory=list)
    unit: str = ""
    stats: list[Stat] = field(default_factory=list)
    note: str = ""
    # Per row, aligned with ``rows`` (page only): a link on the first cell, buttons.
    links: list[RowLink | None] = field(default_factory=list)
    actions: list[list[RowAction]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.chart not in CHART_KINDS:
            raise ValueError(f"chart must be one of {CHART_KINDS}, not {self.chart!r}")
        unknown = [s for s in self.series if s not in self.columns]
        if unknown:
            raise ValueError(f"series {unknown} are not columns")
        for name, per_row in (("links", self.links), ("actions", self.actions)):
            if per_row and len(per_row) != len(self.rows):
                raise ValueError(f"{name} must have one entry per row")

    def as_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": [[_plain(v) for v in row] for row in self.rows],
            "chart": self.chart,
            "series": self.series,
            "unit": self.unit,
            "stats": [
                {"label": s.label, "value": s.value, "unit": s.unit, "hint": s.hint}
                for s in self.stats
            ],
            "note": self.note,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


DataFn = Callable[[DashboardFilters], WidgetData]


@dataclass(frozen=True)
class Widget:
    """``live_events``: outbox event types (prefixes ending in "." match a family) after
    which an open dashboard refreshes this widget; ``wide`` spans two grid columns;
    ``lazy``: the page does not compute it but loads it from its fragment right after the
    page (the page's own time stays within its target as widgets are added)."""

    name: str
    title: str
    data: DataFn
    order: int = 100
    description: str = ""
    live_events: tuple[str, ...] = ()
    wide: bool = False
    lazy: bool = False


_widgets: dict[str, Widget] = {}


def register_widget(widget: Widget) -> None:
    """Add (or replace, by name) a widget. Call at import of ``<app>/dashboard_widgets.py``."""
    if not widget.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"widget name {widget.name!r}: letters, digits, - and _ only")
    _widgets[widget.name] = widget


def unregister_widget(name: str) -> None:
    _widgets.pop(name, None)


def widget_list() -> list[Widget]:
    return sorted(_widgets.values(), key=lambda w: (w.order, w.name))


def widget_get(name: str) -> Widget | None:
    return _widgets.get(name)
