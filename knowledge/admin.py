from __future__ import annotations

from django.contrib import admin

from knowledge.models import (
    Document,
    IngestionJob,
    KnowledgeSource,
    ObjectEvent,
    SuggestionFeedback,
)


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "path", "bucket", "prefix", "updated_at")


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "source", "external_id", "status", "version", "updated_at")
    list_filter = ("source", "status", "content_type")
    search_fields = ("title", "external_id")


@admin.register(IngestionJob)
class IngestionJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "source", "processed", "total", "created_at")
    list_filter = ("status", "kind", "backend")


@admin.register(ObjectEvent)
class ObjectEventAdmin(admin.ModelAdmin):
    list_display = ("event_key", "via", "action", "bucket", "key", "received_at", "processed_at")


@admin.register(SuggestionFeedback)
class SuggestionFeedbackAdmin(admin.ModelAdmin):
    list_display = ("ticket", "chunk_ref", "document", "helpful", "user", "created_at")
    list_filter = ("helpful",)
