from __future__ import annotations

from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge base"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import Tags
        from django.core.checks import register as check_register

        from knowledge.checks import check_bedrock_s3_source, check_bedrock_thresholds

        check_register(check_bedrock_thresholds)
        check_register(check_bedrock_s3_source, Tags.database)
        from knowledge.draft_services import on_message_created
        from knowledge.panels import draft_panel_context, suggestions_panel_context
        from knowledge.privacy import knowledge_erase
        from support.events import subscribe
        from tickets.context.privacy import register_erasure_hook
        from tickets.panels import Panel, register_panel

        register_erasure_hook("knowledge", knowledge_erase)
        from knowledge.retention import object_events_purge
        from support.retention import register_raw_event_purger

        # S3 events processed more than RAW_EVENT_RETENTION_DAYS ago (hourly beat task)
        register_raw_event_purger("knowledge_object_events", object_events_purge)
        from knowledge.metrics import (
            kb_object_event_metrics,
            kb_search_metrics,
            kb_source_metrics,
        )
        from support.metrics import metric_source_register

        metric_source_register("knowledge", kb_search_metrics)  # GET /metrics
        # PostgreSQL only: reported even while Redis (the search counts) is down
        metric_source_register("knowledge_events", kb_object_event_metrics)
        # sources whose last sync or ingest failed (PostgreSQL only too)
        metric_source_register("knowledge_sources", kb_source_metrics)
        # POST /api/tickets?include=suggestions (docs/customer-context.md).
        from knowledge.extras import create_extra_suggestions
        from tickets import extras

        extras.register_create_extra("suggestions", create_extra_suggestions)
        # An agent's reply settles its pending draft (sent as drafted, edited, discarded).
        subscribe("message.created", on_message_created)

        register_panel(
            Panel(
                name="kb-suggestions",
                title="Suggested articles",
                template="knowledge/suggestions_panel.html",
                context=suggestions_panel_context,
                order=30,
                slot="knowledge",
            )
        )
        register_panel(
            Panel(
                name="kb-draft",
                title="Draft a reply",
                template="knowledge/draft_panel.html",
                context=draft_panel_context,
                order=25,
                slot="knowledge",
            )
        )
