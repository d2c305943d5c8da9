from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def on_ticket_created(event: Any) -> None:
    """Only enqueue: the task is idempotent (one decision per ticket and attempt key)."""
    from django.conf import settings

    from routing.tasks import route_ticket_task
    from support.events import subscriber_task_enqueue

    if settings.ROUTING_ENABLED and event.payload.get("ticket_id") is not None:
        subscriber_task_enqueue(route_ticket_task, int(event.payload["ticket_id"]))


def on_messages_created(events: list[Any]) -> None:
    """A customer's message on a ticket whose latest decision went to review for want of
    the customer's words (a ticket the system opened: an IVR failure) routes it again on
    those words: a task per such message (one query a relay batch finds the tickets; the
    task checks the rest, that the message is the customer's first with words among
    them, and is idempotent per ticket: ``routing.services.routing_customer_text_decide``)."""
    from django.conf import settings

    from routing.selectors import tickets_awaiting_customer_text
    from routing.tasks import routing_customer_text_decide_task
    from support.events import subscriber_task_enqueue

    if not settings.ROUTING_ENABLED:
        return
    messages = [
        (int(event.payload["ticket_id"]), int(event.payload["message_id"]))
        for event in events
        if event.payload.get("direction") == "inbound"
        and event.payload.get("kind", "public") == "public"
    ]
    if not messages:
        return
    wanted = set(tickets_awaiting_customer_text(ticket_ids=[t for t, _ in messages]))
    for ticket_id, message_id in messages:
        if ticket_id in wanted:
            subscriber_task_enqueue(routing_customer_text_decide_task, ticket_id, message_id)


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import register as check_register

        from routing.checks import (
            check_bedrock_model_region,
            check_routing_sources,
            check_ticketing_system_url,
        )

        check_register(check_ticketing_system_url)
        check_register(check_bedrock_model_region)
        check_register(check_routing_sources)
        from routing.panels import register
        from routing.privacy import routing_erase
        from routing.services import status_poll_target_kind, ticketing_sync_target_kind
        from support.delivery.registry import target_kind_register

        target_kind_register(ticketing_sync_target_kind())
        target_kind_register(status_poll_target_kind())
        from support.events import subscribe, subscribe_batch
        from tickets.context.privacy import register_erasure_hook

        subscribe("ticket.created", on_ticket_created)
        subscribe_batch("message.created", on_messages_created)
        register_erasure_hook("routing", routing_erase)
        register()
        from routing.metrics import routing_metrics
        from support.metrics import metric_source_register

        metric_source_register("routing", routing_metrics)
        from routing.demo import load_demo_routing
        from tickets.demo import demo_step_register

        demo_step_register("routing", load_demo_routing)
        from routing.reasons import review_note_words
        from tickets.system_text import register_system_text

        # the timeline shows review reasons with the data set's labels in words
        register_system_text("routing", review_note_words)
