from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from knowledge import services
from knowledge.models import (
    Document,
    IngestionJob,
    KnowledgeSource,
    ObjectEvent,
    ReplyDraft,
    SuggestionFeedback,
)
from knowledge.selectors import reply_draft_summary
from support.auth.admin import RecordAdminMixin, VisibleRowsAdminMixin
from support.auth.roles import is_supervisor
from support.errors import InvalidInput
from tickets.admin import SupervisorAdmin

# Who does what here (docs/security.md, "Roles"; docs/knowledge.md): supervisors run
# syncs and uploads and read feedback through the API, so they open sources, documents,
# jobs, feedback and reply drafts here, sync sources and run failed uploads again; nothing
# here is theirs to add or edit (records the ingestion writes, and sources: below). They
# see received S3 events (which object, whether it went in, why not) and re-drive the
# failed ones; the raw notification (``payload``: the requester's principal and address)
# stays the superusers'.


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(SupervisorAdmin):
    """Supervisors see the sources (what a sync or an upload names) but add and change them
    only with Django permissions, as superusers do: a source's folder, JSONL file or S3
    bucket says what the server reads into the knowledge base that agents and the reply
    model quote, so pointing one at the server's own files (``/etc``, the settings) or
    another bucket the workers' credentials reach is an operator's act. An upload still
    makes its own upload source when it names a new one (``POST /api/kb/documents``)."""

    list_display = ("name", "kind", "path", "bucket", "prefix", "updated_at")
    # Written by a sync as it starts listing: S3 events received before it are closed as
    # settled by that sync, so a hand-set date would drop (or apply) real events.
    readonly_fields = ("listed_at",)
    actions = ["sync_again"]

    @admin.action(description="Sync the selected sources again")
    def sync_again(self, request: HttpRequest, queryset: QuerySet[KnowledgeSource]) -> None:
        """What ``POST /api/kb/sync`` starts, one job per source (after a failed sync: the
        ``support_kb_sources_failing`` gauge); a source whose sync is queued or running
        already is left to it."""
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors start syncs.", messages.ERROR)
            return
        for source in queryset.order_by("pk"):
            try:
                job, created = services.source_sync_again(source=source, actor=request.user)
            except InvalidInput as exc:
                self.message_user(request, exc.message, messages.WARNING)
                continue
            if created:
                self.message_user(request, f"Sync of {source.name!r} queued as job {job.pk}.")
            else:
                scope = repr(source.name) if job.source else f"all sources (so {source.name!r})"
                self.message_user(
                    request,
                    f"A sync of {scope} is already {job.status} (job {job.pk}): not started again.",
                    messages.WARNING,
                )

    # The role opens the page (SupervisorAdmin's view and module access); changing and
    # adding are Django's permissions alone, skipping SupervisorAdmin's grant.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return admin.ModelAdmin.has_add_permission(self, request)


class LastReadFailedFilter(admin.SimpleListFilter):
    title = "last read failed"
    parameter_name = "read_failed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(Document)
class DocumentAdmin(RecordAdminMixin, SupervisorAdmin):
    """Documents come from uploads, S3 and ``kb_ingest``, and leave when their source drops
    them (a sync, an S3 removal: ``document_delete`` takes the chunks and tells the search
    caches). A row added or edited here would not match its chunks; one deleted here would
    skip the caches and come back with the next sync. Supervisors see them (which files
    failed their last read, and why) as they see the knowledge base in the workbench."""

    list_display = ("title", "source", "external_id", "status", "version", "problem", "updated_at")
    list_filter = ("source", "status", LastReadFailedFilter, "content_type")
    search_fields = ("title", "external_id")

    @admin.display(description="last read failed")
    def problem(self, obj: Document) -> str:
        """Why the last read of the file failed (a document with a good version keeps it
        in search meanwhile)."""
        return obj.error[:200]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IngestionJob)
class IngestionJobAdmin(RecordAdminMixin, SupervisorAdmin):
    """Supervisors: the jobs of the syncs and uploads they start, and why one failed; they
    run a failed upload again from its kept file (docs/knowledge.md, "Uploads"). Records
    of what a run did: never made or edited by hand."""

    list_display = (
        "id",
        "kind",
        "status",
        "source",
        "file_name",
        "processed",
        "total",
        "created_at",
        "heartbeat_at",
        "reason",
    )
    list_filter = ("status", "kind", "backend")
    list_select_related = ("source",)
    actions = ["upload_again"]

    @admin.action(description="Run the selected failed uploads again (their kept files)")
    def upload_again(self, request: HttpRequest, queryset: QuerySet[IngestionJob]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors run uploads again.", messages.ERROR)
            return
        queued, refused = [], []
        for job in queryset.order_by("pk"):
            try:
                queued.append(services.upload_job_retry(job=job, user=request.user).pk)
            except InvalidInput as exc:
                refused.append(exc.message)
        if queued:
            self.message_user(request, f"Queued again as job(s) {', '.join(map(str, queued))}.")
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.display(description="reason")
    def reason(self, obj: IngestionJob) -> str:
        """Why a job failed as a whole (the sweep's "stopped: no sign of progress ...",
        "not run: source ... is being synced by job N", an exception); the files that
        failed are in ``errors``."""
        if obj.status != IngestionJob.Status.FAILED:
            return ""
        reasons = [e.get("error", "") for e in obj.errors if not e.get("id")]
        return str(reasons[-1])[:200] if reasons else ""


class ObjectEventStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("failed", "Failed (re-drive)"),
            ("pending", "Not processed yet"),
            ("superseded", "Superseded"),
            ("processed", "Processed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        unprocessed = queryset.filter(processed_at__isnull=True)
        return {
            "failed": unprocessed.filter(failed_at__isnull=False),
            "pending": unprocessed.filter(failed_at__isnull=True),
            "superseded": queryset.filter(processed_at__isnull=False).exclude(note=""),
            "processed": queryset.filter(processed_at__isnull=False, note=""),
        }.get(self.value() or "", queryset)


@admin.register(ObjectEvent)
class ObjectEventAdmin(RecordAdminMixin, SupervisorAdmin):
    """S3 object events as received, and what became of each: processed, superseded by a
    later event of its object, waiting (the sweep queues a lost one again), or failed once
    the sweep gave up (``services.OBJECT_EVENT_MAX_ATTEMPTS``), with the error. A
    supervisor re-drives a failed one once its cause is fixed (audit-logged). The raw
    notification is shown to superusers only."""

    list_display = (
        "id",
        "action",
        "bucket",
        "key",
        "via",
        "state",
        "attempts",
        "error",
        "received_at",
        "processed_at",
    )
    list_filter = (ObjectEventStateFilter, "action", "via")
    search_fields = ("key", "event_key")
    actions = ["redrive"]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return None if getattr(request.user, "is_superuser", False) else ("payload",)

    @admin.display(description="state")
    def state(self, obj: ObjectEvent) -> str:
        if obj.processed_at is not None:
            return "superseded" if obj.note else "processed"
        return "failed" if obj.failed_at is not None else "pending"

    @admin.display(description="last error")
    def error(self, obj: ObjectEvent) -> str:
        return obj.last_error[:200]

    @admin.action(description="Apply the selected failed events again")
    def redrive(self, request: HttpRequest, queryset: QuerySet[ObjectEvent]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can re-drive.", messages.ERROR)
            return
        events = list(queryset.order_by("pk"))  # as selected, in the order received
        done = sum(services.object_event_redrive(event=e, actor=request.user) for e in events)
        skipped = len(events) - done
        note = f"; {skipped} left as they were (not failed)" if skipped else ""
        self.message_user(request, f"{done} event(s) queued to apply again{note}.")


@admin.register(SuggestionFeedback)
class SuggestionFeedbackAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Agents' verdicts on suggested passages: supervisors read them here as in
    ``GET /api/kb/feedback`` (others, those of the tickets they may see); what an agent
    said, never made or edited by hand."""

    visible_through = ("ticket",)
    list_display = ("ticket", "chunk_ref", "document", "helpful", "user", "created_at")
    list_filter = ("helpful",)
    list_select_related = ("ticket", "document", "user")


@admin.register(ReplyDraft)
class ReplyDraftAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Supervisors: every draft offered and what became of it, with the outcome metric
    above the list (``knowledge/templates/admin/knowledge/replydraft/change_list.html``).
    Read-only: drafts are written by agents' requests and settled by their replies."""

    visible_through = ("ticket",)
    list_display = ("id", "ticket", "user", "channel", "provider", "first_citation", "outcome")
    list_filter = ("outcome", "provider", "channel")
    list_select_related = ("ticket", "user")
    readonly_fields = [f.name for f in ReplyDraft._meta.fields] + ["documents"]

    @admin.display(description="first citation")
    def first_citation(self, obj: ReplyDraft) -> str:
        return str(obj.citations[0].get("title", "")) if obj.citations else ""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            # the totals of the drafts this viewer may see (the list's rows), not of all
            request,
            {
                **(extra_context or {}),
                "draft_metrics": reply_draft_summary(self.get_queryset(request)),
            },
        )
