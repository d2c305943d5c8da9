from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def on_sla_event(event: Any) -> None:
    """``sla.warning`` / ``sla.breached`` (recorded by the SLA checker): raise the alert
    here, in the relay's transaction (idempotent: a repeated event changes nothing); its
    notifications are deliveries the engine sends after commit."""
    from alerts.services import sla_event_handle

    sla_event_handle(event_id=event.pk, event_type=event.event_type, payload=dict(event.payload))


def on_ticket_events(events: list[Any]) -> None:
    """A relay batch's ticket and message events: resolve the SLA alerts of those tickets
    whose clock has stopped (answered, resolved, closed, merged, due time moved). One
    query per batch when no SLA alert is open for them."""
    from alerts.services import sla_alerts_resolve

    ids = {event.payload.get("ticket_id") for event in events}
    sla_alerts_resolve(ticket_ids=sorted(int(pk) for pk in ids if pk is not None))


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
        from support.events import subscribe, subscribe_batch
        from support.metrics import metric_source_register

        for kind in target_kinds():
            target_kind_register(kind)
        subscribe("sla.warning", on_sla_event)
        subscribe("sla.breached", on_sla_event)
        for event_type in ("ticket.updated", "ticket.resolved", "message.created"):
            subscribe_batch(event_type, on_ticket_events)
        metric_source_register("alerts", alert_metrics)
        from alerts.demo import load_demo_alerts
        from tickets.demo import demo_step_register

        demo_step_register("alerts", load_demo_alerts)
