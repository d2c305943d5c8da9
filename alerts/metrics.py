"""``support_alerts{state,severity}`` for ``GET /metrics`` (registered in
``AlertsConfig.ready``): open alerts by state and severity, and resolved ones in the
window."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import Metric

from alerts.models import OPEN_STATES, Alert, AlertState, Severity
from support.metrics import gauge, window_start


def alert_metrics() -> Iterator[Metric]:
    alerts = gauge(
        "alerts",
        "Alerts by state and severity: firing and acknowledged now, resolved in the window.",
        ["state", "severity"],
    )
    counts = {(state, severity): 0 for state in AlertState.values for severity in Severity.values}
    open_rows = (
        Alert.objects.filter(state__in=OPEN_STATES)  # partial index alerts_open_idx
        .values("state", "severity")
        .annotate(n=Count("pk"))
        .order_by()
    )
    resolved_rows = (
        Alert.objects.filter(state=AlertState.RESOLVED, resolved_at__gte=window_start())
        .values("state", "severity")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in [*open_rows, *resolved_rows]:
        counts[(row["state"], row["severity"])] = row["n"]
    for (state, severity), n in sorted(counts.items()):
        alerts.add_metric([state, severity], n)
    yield alerts
