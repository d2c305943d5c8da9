"""Server-side SVG charts for the dashboard's widgets (no chart library, no script).

Colours come from CSS classes (``series-0`` ... ``series-5``, ``axis``, ``grid``), so the
light and dark themes restyle the same SVG; every chart carries a ``<title>`` and
``<desc>`` and sits next to a data table (the accessible fallback and the CSV's rows).
Values are escaped; nothing here trusts a label.
"""

from __future__ import annotations

import math
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dashboard.widgets import WidgetData

WIDTH = 640
LABEL_W = 150
VALUE_W = 60
SERIES_CLASSES = 6


def _present(value: Any) -> bool:
    """A number to draw (``None`` and non-numbers are no data)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def format_value(value: Any, unit: str = "") -> str:
    """A figure as people read it: 1,234 / 12.5 / 87% / $0.0042 / — for no data."""
    if value is None or value == "":
        return "—"
    if not isinstance(value, int | float):
        return str(value)
    if unit == "%":
        return f"{value:.1f}%" if value % 1 else f"{int(value)}%"
    if unit == "$":
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip() if unit and unit != "$" else text


def _scale(value: float) -> tuple[float, int]:
    """A round axis maximum at or above ``value`` and how many intervals divide it into
    round ticks (25 → 5 × 5, 40 → 4 × 10, 8 → 4 × 2)."""
    if value <= 0:
        return 1.0, 4
    exponent = math.floor(math.log10(value))
    base = 10**exponent
    for step, intervals in ((1, 4), (2, 4), (2.5, 5), (4, 4), (5, 5), (8, 4), (10, 5)):
        if value <= step * base + 1e-9:
            return float(step * base), intervals
    return float(10 * base), 5


def _svg(
    title: str, desc: str, height: int, body: list[str], chart_id: str, width: int = WIDTH
) -> SafeString:
    return mark_safe(  # noqa: S308 - every label and value below went through escape()
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{chart_id}-t">{escape(title)}</title>'
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def _cut(label: Any, size: int = 22) -> str:
    text = str(label)
    return text if len(text) <= size else text[: size - 1] + "…"


def _horizontal(data: WidgetData, title: str, chart_id: str, stacked: bool) -> SafeString:
    series = data.series
    idx = [data.columns.index(s) for s in series]
    rows = data.rows
    per_row = 22 if stacked else 8 + 14 * len(series)
    top = 6
    height = top + per_row * len(rows) + 24
    totals = [
        sum(_num(r[i]) for i in idx) if stacked else max(_num(r[i]) for i in idx) for r in rows
    ]
    peak, intervals = _scale(max(totals, default=0))
    plot_w = WIDTH - LABEL_W - VALUE_W
    body: list[str] = []
    for tick in range(intervals + 1):
        x = LABEL_W + plot_w * tick / intervals
        body.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 20}"/>')
        label = format_value(
            round(peak * tick / intervals, 2), data.unit if data.unit != "%" else ""
        )
        body.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    for r_i, row in enumerate(rows):
        y = top + per_row * r_i
        body.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + per_row / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(_cut(row[0]))}<title>{escape(row[0])}</title></text>'
        )
        offset = 0.0
        for s_i, col in enumerate(idx):
            value = _num(row[col])
            w = plot_w * value / peak
            if stacked:
                bx, by, bh = LABEL_W + offset, y + 3, per_row - 6
                offset += w
            else:
                bx, by, bh = LABEL_W, y + 4 + 14 * s_i, 12
            tip = f"{row[0]} · {series[s_i]}: {format_value(row[col], data.unit)}"
            body.append(
                f'<rect class="series-{s_i % SERIES_CLASSES}" x="{bx:.1f}" y="{by:.1f}" '
                f'width="{max(w, 0):.1f}" height="{bh}" rx="2"><title>{escape(tip)}</title></rect>'
            )
            if not stacked:
                body.append(
                    f'<text class="value" x="{bx + w + 4:.1f}" y="{by + 10:.1f}">'
                    f"{escape(format_value(row[col], data.unit))}</text>"
                )
        if stacked:
            body.append(
                f'<text class="value" x="{LABEL_W + offset + 4:.1f}" y="{y + per_row / 2 + 4:.1f}">'
                f"{escape(format_value(totals[r_i], data.unit))}</text>"
            )
    desc = (
        f"{'Stacked' if stacked else 'Grouped'} bars of {', '.join(series)} by {data.columns[0]}."
    )
    return _svg(title, desc, height, body, chart_id)


def _lines(data: WidgetData, title: str, chart_id: str, width: int = WIDTH) -> SafeString:
    idx = [data.columns.index(s) for s in data.series]
    rows = data.rows
    height = 240
    peak, intervals = _scale(max((_num(r[i]) for r in rows for i in idx), default=0))
    labels = [
        format_value(round(peak * tick / intervals, 2), data.unit if data.unit != "%" else "")
        for tick in range(intervals + 1)
    ]
    # Room for the widest axis label ("1,500 ms"): about 6.5 px a character at 11 px.
    left = max(48, 12 + math.ceil(6.5 * max(len(label) for label in labels)))
    right, top, bottom = 12, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    for tick, label in enumerate(labels):
        y = top + plot_h - plot_h * tick / intervals
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
        )
        body.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    n = len(rows)

    def x_at(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n if n else 0)

    every = max(1, math.ceil(n / (8 * width / WIDTH)))
    for i, row in enumerate(rows):
        if i % every == 0:
            body.append(
                f'<text class="axis" x="{x_at(i):.1f}" y="{height - 12}" text-anchor="middle">'
                f"{escape(_cut(row[0], 12))}</text>"
            )
    for s_i, col in enumerate(idx):
        cls = f"series-{s_i % SERIES_CLASSES}"
        # A bucket without a value (a rate with nothing to divide) is a gap in the line, not
        # a point at zero: the line is drawn in runs of consecutive values.
        points = [
            (i, x_at(i), top + plot_h - plot_h * _num(row[col]) / peak, row)
            for i, row in enumerate(rows)
            if _present(row[col])
        ]
        runs: list[list[tuple[float, float]]] = []
        for n_point, (i, x, y, _) in enumerate(points):
            if n_point == 0 or points[n_point - 1][0] != i - 1:
                runs.append([])
            runs[-1].append((x, y))
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(f'<polyline class="line {cls}" points="{path}"/>')
        for _, x, y, row in points:
            tip = f"{row[0]} · {data.series[s_i]}: {format_value(row[col], data.unit)}"
            radius = 2.5 if n > 48 else 3.5
            body.append(
                f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    desc = f"Lines of {', '.join(data.series)} over {n} {data.columns[0].lower()} buckets."
    return _svg(title, desc, height, body, chart_id, width)


def chart_svg(data: WidgetData, *, title: str, chart_id: str, wide: bool = False) -> SafeString:
    """The widget's chart as inline SVG; empty for stats-only widgets or no rows."""
    if data.chart == "stats" or not data.rows or not data.series:
        return mark_safe("")
    if data.chart == "lines":
        return _lines(data, title, chart_id, WIDTH * 2 if wide else WIDTH)
    return _horizontal(data, title, chart_id, stacked=data.chart == "stacked")
