"""The alerts part of ``load_demo``: one e-mail target for every supervisor, so the demo's
SLA breach (and any alarm that fires) is notified through the delivery engine."""

from __future__ import annotations

from collections.abc import Callable

from alerts.models import AlertTarget, Severity, TargetKind

DEMO_TARGET_NAME = "Supervisors by e-mail (demo)"


def load_demo_alerts(progress: Callable[[str], None]) -> None:
    if AlertTarget.objects.exists():
        return  # someone configured targets: leave them alone
    AlertTarget.objects.create(
        name=DEMO_TARGET_NAME,
        kind=TargetKind.EMAIL,
        severities=[Severity.CRITICAL, Severity.WARNING, Severity.INFO],
    )
    progress("alerts: an e-mail target for every supervisor")
