"""The supervisor dashboard: the page, each widget's HTML fragment (live refresh) and
each widget's data as JSON or CSV. Supervisors only; thin: parse the filters, call the
widget's data function, render."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard.charts import chart_svg, format_value
from dashboard.filters import RANGES, ParsedFilters, filters_parse
from dashboard.widgets import Widget, WidgetData, widget_get, widget_list
from support.auth.roles import is_supervisor
from support.errors import InvalidInput
from support.models import OutboxEvent
from tickets.models import Channel, Team

View = Callable[..., HttpResponse]


def supervisor_required(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_supervisor(request.user):
            return render(
                request,
                "dashboard/forbidden.html",
                {"message": "The dashboard is for supervisors."},
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapper


def _parse(request: HttpRequest, teams: list[Team]) -> ParsedFilters:
    return filters_parse(
        request.GET, team_ids=[t.pk for t in teams], channels=[c.value for c in Channel]
    )


def _widget_or_404(name: str) -> Widget:
    widget = widget_get(name)
    if widget is None:
        raise Http404(f"No dashboard widget {name!r}.")
    return widget


def _table(data: WidgetData) -> list[list[str]]:
    """The rows as shown: the unit applies to the charted columns only."""
    charted = {data.columns.index(s) for s in data.series}
    return [
        [format_value(v, data.unit if i in charted else "") for i, v in enumerate(row)]
        for row in data.rows
    ]


def _table_rows(data: WidgetData, table: list[list[str]]) -> list[dict[str, Any]]:
    """The shown rows with their page-only link and buttons."""
    return [
        {
            "cells": cells,
            "link": data.links[i] if data.links else None,
            "actions": data.actions[i] if data.actions else [],
        }
        for i, cells in enumerate(table)
    ]


def _widget_context(
    widget: Widget, parsed: ParsedFilters, *, on_page: bool = False
) -> dict[str, Any]:
    """What a widget's template needs; on the page a lazy widget has only its links (it
    is loaded from ``fragment_url`` right after the page)."""
    query = urlencode(parsed.query())
    data_url = reverse("dashboard-data", kwargs={"name": widget.name})
    links = {
        "widget": widget,
        "fragment_url": reverse("dashboard-widget", kwargs={"name": widget.name}) + f"?{query}",
        "json_url": f"{data_url}?{query}",
        "csv_url": f"{data_url}?{query}&format=csv",
    }
    if on_page and widget.lazy:
        return {**links, "lazy": True}
    data = widget.data(parsed.filters)
    table = _table(data)
    return {
        **links,
        "data": data,
        "table": _table_rows(data, table),
        "has_actions": any(data.actions),
        "svg": chart_svg(
            data, title=widget.title, chart_id=f"chart-{widget.name}", wide=widget.wide
        ),
    }


@require_GET
@supervisor_required
def dashboard(request: HttpRequest) -> HttpResponse:
    teams = list(Team.objects.order_by("name"))
    context: dict[str, Any] = {
        "teams": teams,
        "channels": Channel.choices,
        "ranges": [(key, label) for key, (label, _) in RANGES.items()],
    }
    try:
        parsed = _parse(request, teams)
    except InvalidInput as exc:
        context.update({"error": exc.message, "params": request.GET})
        return render(request, "dashboard/dashboard.html", context, status=400)
    last = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    context.update(
        {
            "parsed": parsed,
            "selected_teams": set(parsed.filters.team_ids or ()),
            "selected_channels": set(parsed.filters.channels or ()),
            "widgets": [_widget_context(w, parsed, on_page=True) for w in widget_list()],
            "last_event_id": last or 0,
        }
    )
    return render(request, "dashboard/dashboard.html", context)


def _bad_request(exc: InvalidInput, *, as_json: bool) -> HttpResponse:
    if as_json:
        body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        return JsonResponse(body, status=400)
    return HttpResponse(exc.message, status=400, content_type="text/plain; charset=utf-8")


@require_GET
@supervisor_required
def widget_fragment(request: HttpRequest, name: str) -> HttpResponse:
    widget = _widget_or_404(name)
    try:
        parsed = _parse(request, list(Team.objects.order_by("name")))
    except InvalidInput as exc:
        return _bad_request(exc, as_json=False)
    return render(request, "dashboard/_widget_body.html", _widget_context(widget, parsed))


CSV_BOM = "\ufeff"


def _csv_cell(value: Any) -> Any:
    """No spreadsheet formula injection: a text cell starting like a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@require_GET
@supervisor_required
def widget_data(request: HttpRequest, name: str) -> HttpResponse:
    widget = _widget_or_404(name)
    fmt = request.GET.get("format", "json")
    if fmt not in ("json", "csv"):
        return _bad_request(
            InvalidInput("format must be json or csv.", details={"format": ["Invalid."]}),
            as_json=True,
        )
    try:
        parsed = _parse(request, list(Team.objects.order_by("name")))
    except InvalidInput as exc:
        return _bad_request(exc, as_json=fmt == "json")
    data = widget.data(parsed.filters)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(data.columns)
        for row in data.rows:
            writer.writerow([_csv_cell(v) for v in row])
        # A UTF-8 byte order mark first: without one Excel reads the file in the machine's
        # legacy code page and shows accented names as mojibake ("JosÃ©"); CSV readers
        # that know UTF-8 skip it (Python's "utf-8-sig", LibreOffice, Numbers, pandas).
        response = HttpResponse(CSV_BOM + buffer.getvalue(), content_type="text/csv; charset=utf-8")
        stamp = f"{parsed.start_date.isoformat()}_{parsed.end_date.isoformat()}"
        response["Content-Disposition"] = f'attachment; filename="{widget.name}_{stamp}.csv"'
        return response
    body = {
        "widget": widget.name,
        "title": widget.title,
        "filters": {
            "start": parsed.filters.start.isoformat(),
            "end": parsed.filters.end.isoformat(),
            "range": parsed.range,
            "team": list(parsed.filters.team_ids or ()),
            "channel": list(parsed.filters.channels or ()),
            "bucket": parsed.filters.bucket,
        },
        **data.as_json(),
    }
    return JsonResponse(body)
