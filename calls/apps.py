from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def on_call_analysed(event: Any) -> None:
    """An analysed call (or a new version of its analysis) is a contact in the customer
    context: its entry is written in a task (sentiment may call an outside service)."""
    from calls.tasks import call_interaction_record_task
    from support.events import subscriber_task_enqueue

    subscriber_task_enqueue(call_interaction_record_task, int(event.aggregate_id))


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
        # A call's entry in the customer context is shown under the call page's rule.
        from calls.selectors import CALL_SCOPE, call_scope_rows, call_scope_visible
        from tickets.context.scopes import register_scope_rule

        register_scope_rule(CALL_SCOPE, call_scope_visible, rows=call_scope_rows)
        from support.events import subscribe

        subscribe("call.analysed", on_call_analysed)
        register_raw_event_purger("calls_events", call_events_purge)
        from calls.metrics import call_metrics
        from support.metrics import metric_source_register

        metric_source_register("calls", call_metrics)
