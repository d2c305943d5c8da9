from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from support.models import OutboxEvent


def _on_message_created(event: OutboxEvent) -> None:
    """A queued public reply on one of our channels: enqueue its send task."""
    from channels_app.services import outbound_wanted
    from channels_app.tasks import outbound_message_send_task
    from support.events import subscriber_task_enqueue

    if outbound_wanted(event.payload):
        subscriber_task_enqueue(outbound_message_send_task, event.payload["message_id"])


def _on_ticket_resolved(event: OutboxEvent) -> None:
    """A resolved ticket: enqueue its satisfaction survey task (only enqueue: the task
    locks the ticket and writes the message after the relay's batch has committed; it is
    idempotent per resolution)."""
    from django.conf import settings

    from channels_app.tasks import csat_survey_send_task
    from support.events import subscriber_task_enqueue

    resolved_at = event.payload.get("resolved_at")
    ticket_id = event.payload.get("ticket_id")
    if settings.CSAT_SURVEY_ENABLED and ticket_id is not None and resolved_at:
        subscriber_task_enqueue(csat_survey_send_task, int(ticket_id), str(resolved_at))


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from support.crypto import secrets_keys_check

        secrets_keys_check()  # a malformed CHANNELS_SECRETS_KEY fails at start, not at use

        from channels_app.privacy import channels_erase
        from channels_app.services import channel_reply_target_kind
        from channels_app.verification import webchat_code_target_kind
        from support.delivery.registry import target_kind_register

        target_kind_register(channel_reply_target_kind())
        from channels_app.services.handoff import chatbot_callback_target_kind

        target_kind_register(chatbot_callback_target_kind())
        # A hand-off bot polls GET /api/tickets/{id}/status with its signature.
        from channels_app.api.views import chatbot_status_access
        from tickets.status_access import register_status_access

        register_status_access(chatbot_status_access)
        from channels_app.metrics import intake_metrics, media_metrics
        from support.metrics import metric_source_register

        metric_source_register("channels", intake_metrics)
        metric_source_register("media", media_metrics)
        target_kind_register(webchat_code_target_kind())
        from channels_app.retention import inbound_events_purge
        from channels_app.verification import webchat_verifications_erase
        from support.events import subscribe
        from support.retention import register_raw_event_purger
        from tickets.context.privacy import register_erasure_hook

        subscribe("message.created", _on_message_created)
        # the customer is asked to rate our help on the ticket's channel (docs/customer-context.md)
        subscribe("ticket.resolved", _on_ticket_resolved)
        # what a public reply may carry on its channel (text length, files): checked by the
        # core when an agent sends, shown by the reply box
        from channels_app.services.reply_limits import channel_reply_rules
        from tickets.reply_rules import register_reply_rules

        register_reply_rules("channels", channel_reply_rules())
        register_erasure_hook("channels", channels_erase)
        register_erasure_hook("webchat-verifications", webchat_verifications_erase)
        register_raw_event_purger("channels_inbound_events", inbound_events_purge)

        from django.db.models.signals import post_delete, post_save

        from channels_app.models import ChannelAccount
        from channels_app.selectors import channel_account_cache_clear

        post_save.connect(channel_account_cache_clear, sender=ChannelAccount)
        post_delete.connect(channel_account_cache_clear, sender=ChannelAccount)

        from channels_app.demo import load_demo_channels
        from tickets.demo import demo_step_register

        demo_step_register("channels", load_demo_channels)

        from channels_app.panels import deliveries_context, webchat_visitor_context
        from tickets.panels import Panel, register_panel

        register_panel(
            Panel(
                name="webchat-visitor",
                title="Web chat visitor",
                template="channels_app/panel_webchat_visitor.html",
                context=webchat_visitor_context,
                order=50,
            )
        )

        register_panel(
            Panel(
                name="channel-deliveries",
                title="Channel deliveries",
                template="channels_app/panel_deliveries.html",
                context=deliveries_context,
                order=60,
            )
        )
