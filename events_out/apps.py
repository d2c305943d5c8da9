from __future__ import annotations

from django.apps import AppConfig


class EventsOutConfig(AppConfig):
    """Events leaving the product: the outbox relay's external sinks (Amazon EventBridge,
    outgoing webhooks, Kafka), each send a ``support.delivery`` delivery."""

    name = "events_out"
    verbose_name = "Events out"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from events_out import services
        from support.delivery.registry import target_kind_register
        from support.sinks import sink_register

        for kind in services.target_kinds():
            target_kind_register(kind)
        for sink in services.sinks():
            sink_register(sink)
        services.erasure_hook_register()
