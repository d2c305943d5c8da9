"""Server-side SVG charts: labels escaped, round axes, every kind drawn."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.charts import _scale, chart_svg, format_value
from dashboard.widgets import WidgetData


def test_labels_are_escaped():
    data = WidgetData(
        columns=["Team", "Open"], rows=[['<script>alert(1)</script>"', 3]], series=["Open"]
    )
    svg = str(chart_svg(data, title="Backlog <b>", chart_id="c"))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "Backlog &lt;b&gt;" in svg
    assert svg.startswith('<svg class="chart"')


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, (1.0, 4)), (7, (8.0, 4)), (25, (25.0, 5)), (26, (40.0, 4)), (92, (100.0, 5))],
)
def test_round_axis(value, expected):
    assert _scale(value) == expected


def test_kinds_and_empty():
    rows = [["a", 1, 2], ["b", 3, 4]]
    for kind in ("bars", "stacked", "lines"):
        data = WidgetData(columns=["X", "P", "Q"], rows=rows, chart=kind, series=["P", "Q"])
        assert "<svg" in str(chart_svg(data, title="t", chart_id=kind))
    assert (
        str(chart_svg(WidgetData(columns=["X"], rows=[], chart="stats"), title="t", chart_id="s"))
        == ""
    )
    with pytest.raises(ValueError, match="not columns"):
        WidgetData(columns=["X"], rows=[], series=["Y"])


def test_format_value():
    assert format_value(None) == "—"
    assert format_value(1234) == "1,234"
    assert format_value(66.7, "%") == "66.7%"
    assert format_value(0.0028, "$") == "$0.0028"
    assert format_value(2.5, "h") == "2.5 h"


def test_lines_leave_a_gap_where_a_bucket_has_no_value():
    rows: list[list[Any]] = [["d1", 10, 5], ["d2", None, 6], ["d3", 30, None], ["d4", 40, 8]]
    data = WidgetData(columns=["Day", "P", "Q"], rows=rows, chart="lines", series=["P", "Q"])
    svg = str(chart_svg(data, title="t", chart_id="g"))
    # P: d1 alone, then d3-d4 joined; Q: d1-d2 joined, then d4 alone
    assert svg.count('<polyline class="line series-0"') == 1
    assert svg.count('<polyline class="line series-1"') == 1
    assert svg.count('<circle class="series-0"') == 3
    assert svg.count('<circle class="series-1"') == 3
    assert "d2 · P" not in svg
    assert "d3 · Q" not in svg


def test_lines_leave_room_for_long_axis_labels():
    rows: list[list[Any]] = [["d1", 1200.0], ["d2", 1800.0]]
    data = WidgetData(columns=["Day", "P"], rows=rows, chart="lines", series=["P"], unit="ms")
    svg = str(chart_svg(data, title="t", chart_id="ms"))
    # the widest label, "2,000 ms", ends at the plot's left edge minus 6 and starts inside
    grid = svg.index('<line class="grid" x1="')
    left = float(svg[grid:].split('x1="')[1].split('"')[0])
    assert left - 6 - 6.5 * len("2,000 ms") >= 0
    assert ">2,000 ms</text>" in svg
