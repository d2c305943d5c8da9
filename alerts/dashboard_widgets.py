"""The supervisor dashboard's "Alerts" widget: open alerts, newest first, with buttons to
acknowledge or resolve them there (the same POSTs as the alert page)."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertState, Severity
from alerts.selectors import alert_list_firing
from dashboard.widgets import (
    DashboardFilters,
    RowAction,
    RowLink,
    Stat,
    Widget,
    WidgetData,
    register_widget,
)

LIMIT = 20


def _alerts(filters: DashboardFilters) -> WidgetData:
    alerts = alert_list_firing(limit=LIMIT)
    now = timezone.now()
    rows: list[list[object]] = []
    links: list[RowLink | None] = []
    actions: list[list[RowAction]] = []
    for alert in alerts:
        minutes = max(0, int((now - alert.created_at).total_seconds() // 60))
        rows.append([alert.title, alert.get_severity_display(), alert.get_state_display(), minutes])
        links.append(RowLink(reverse("alerts:detail", kwargs={"alert_id": alert.pk})))
        buttons = []
        if alert.state == AlertState.FIRING:
            buttons.append(
                RowAction(
                    "Acknowledge", reverse("alerts:acknowledge", kwargs={"alert_id": alert.pk})
                )
            )
        buttons.append(
            RowAction("Resolve", reverse("alerts:resolve", kwargs={"alert_id": alert.pk}))
        )
        actions.append(buttons)
    firing = sum(1 for a in alerts if a.state == AlertState.FIRING)
    critical = sum(1 for a in alerts if a.severity == Severity.CRITICAL)
    return WidgetData(
        columns=["Alert", "Severity", "State", "Open for (min)"],
        rows=rows,
        chart="stats",
        stats=[
            Stat("Firing", firing),
            Stat("Acknowledged", len(alerts) - firing),
            Stat("Critical", critical),
        ],
        links=links,
        actions=actions,
        note=(
            "Open alerts now (the date, team and channel filters do not apply); "
            f"the newest {LIMIT} are listed."
            if alerts
            else "No alert is open."
        ),
    )


register_widget(
    Widget(
        name="alerts",
        title="Alerts",
        data=_alerts,
        order=5,
        live_events=("sla.", "alert."),
        wide=True,
        description="Firing and acknowledged alerts: alarm rules over metrics, SLA breaches.",
    )
)
