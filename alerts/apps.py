from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def on_sla_event(event: Any) -> None:
    """``sla.warning`` / ``sla.breached`` (recorded by the SLA checker): raise the alert
    here, in the relay's transaction (idempotent: a repeated event changes nothing); its
    notifications are deliveries the engine sends after commit."""
    from alerts.services import sla_event_handle

    sla_event_handle(event_id=event.pk, event_type=event.event_type, payload=dict(event.payload))


class AlertsConfig(AppConfig):
    """Alarm rules over the metrics, alerts with their history, notifications through the
    delivery engine (e-mail, Slack, PagerDuty, SNS)."""

    name = "alerts"
    verbose_name = "Alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts.metrics import alert_metrics
        from alerts.services import target_kinds
        from support.delivery.registry import target_kind_register
        from support.events import subscribe
        from support.metrics import metric_source_register

        for kind in target_kinds():
            target_kind_register(kind)
        subscribe("sla.warning", on_sla_event)
        subscribe("sla.breached", on_sla_event)
        metric_source_register("alerts", alert_metrics)
        from alerts.demo import load_demo_alerts
        from tickets.demo import demo_step_register

        demo_step_register("alerts", load_demo_alerts)
