from __future__ import annotations

from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge base"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from knowledge.panels import suggestions_panel_context
        from knowledge.privacy import knowledge_erase
        from tickets.context.privacy import register_erasure_hook
        from tickets.panels import Panel, register_panel

        register_erasure_hook("knowledge", knowledge_erase)

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
