from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def on_sla_event(event: Any) -> None:
    """``sla.warning`` / ``sla.breached`` (recorded by the SLA checker): enqueue the task
    that raises the alert (only enqueue: it locks and writes the alert, and its
    notifications, after the relay's batch has committed; idempotent per event)."""
    from alerts.tasks import sla_event_handle_task
    from support.events import subscriber_task_enqueue

    subscriber_task_enqueue(
        sla_event_handle_task, int(event.pk), str(event.event_type), dict(event.payload)
    )


def on_ticket_events(events: list[Any]) -> None:
    """A relay batch's ticket and message events: if any of those tickets has an open SLA
    alert (one read per batch), enqueue the task that resolves those whose clock has
    stopped (answered, resolved, closed, merged, due time moved); nothing is locked or
    written in the relay's transaction."""
    from alerts.selectors import sla_alert_list_open
    from alerts.tasks import sla_alerts_resolve_task
    from support.events import subscriber_task_enqueue

    ids = sorted({int(pk) for e in events if (pk := e.payload.get("ticket_id")) is not None})
    if ids and sla_alert_list_open(ticket_ids=ids).exists():
        subscriber_task_enqueue(sla_alerts_resolve_task, ids)


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
