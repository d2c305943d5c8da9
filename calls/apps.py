from __future__ import annotations

from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls.privacy import calls_erase
        from calls.services import alert_sns_target_kind, salesforce_target_kind
        from support.delivery.registry import target_kind_register

        target_kind_register(salesforce_target_kind())
        target_kind_register(alert_sns_target_kind())
        from calls.retention import call_events_purge
        from support.retention import register_raw_event_purger
        from tickets.context.privacy import register_erasure_hook

        register_erasure_hook("calls", calls_erase)
        register_raw_event_purger("calls_events", call_events_purge)
        from calls.metrics import call_metrics
        from support.metrics import metric_source_register

        metric_source_register("calls", call_metrics)
