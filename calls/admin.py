from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from calls import services
from calls.models import (
    AgentStateEvent,
    AgentStateSpan,
    Alert,
    AlertRule,
    Call,
    CallAnalytics,
    CallEvent,
    Escalation,
    IVRJourney,
    QueueTeam,
    Transcript,
)
from calls.selectors import call_visibility_q
from support.auth.admin import (
    AboutAdminMixin,
    ExactSearchMixin,
    RecordAdminMixin,
    VisibleRowsAdminMixin,
    admin_visibility_register,
)
from support.auth.roles import is_supervisor
from tickets.admin import SupervisorAdmin

# Calls follow the queue → team mapping and their escalation tickets (docs/security.md):
# the admin links or names a call only for those who may see it (``admin_link``).
admin_visibility_register(
    Call,
    lambda user, call: (
        is_supervisor(user) or Call.objects.filter(call_visibility_q(user), pk=call.pk).exists()
    ),
    rows=call_visibility_q,
    subject_name="call",
)


@admin.register(QueueTeam)
class QueueTeamAdmin(SupervisorAdmin):
    """Agents see the calls of the queues mapped to their teams (supervisors see all).
    Supervisors (the role) maintain the mapping without per-model Django permissions."""

    list_display = ["queue_name", "team", "updated_at"]
    list_filter = ["team"]
    search_fields = ["queue_name", "team__name"]


@admin.register(CallEvent)
class CallEventAdmin(ExactSearchMixin, VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Every record received, as received: a hand-made one (unique per source and external
    id) would make the real record look like a redelivery. A record (the caller's number,
    the call's journey) is listed for those who may see its call."""

    show_full_result_count = False  # a big table: one count per page, not two

    visible_match = ("contact_id", Call, "contact_id")

    list_display = ["id", "source", "external_id", "contact_id", "status", "error", "created_at"]
    list_filter = ["source", "status"]
    search_fields = ["external_id"]
    exact_search_fields = ("external_id", "contact_id")
    search_help_text = "A record's external id or a contact id, exactly."
    readonly_fields = ["created_at", "updated_at", "processed_at"]
    actions = ["redrive", "close_unapplied"]

    def _failed_only(
        self,
        request: HttpRequest,
        queryset: QuerySet[CallEvent],
        act: Any,
        done_words: str,
    ) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can do this.", messages.ERROR)
            return
        events = list(queryset)  # as selected (the action moves them out of a filter)
        done = sum(act(event=event, actor=request.user) for event in events)
        skipped = len(events) - done
        note = f"; {skipped} left as they were (not failed)" if skipped else ""
        self.message_user(request, f"{done} record(s) {done_words}{note}.")

    @admin.action(description="Apply the selected failed records again")
    def redrive(self, request: HttpRequest, queryset: QuerySet[CallEvent]) -> None:
        self._failed_only(request, queryset, services.call_event_redrive, "queued to apply again")

    @admin.action(description="Close the selected failed records unapplied")
    def close_unapplied(self, request: HttpRequest, queryset: QuerySet[CallEvent]) -> None:
        self._failed_only(request, queryset, services.call_event_close, "closed unapplied")


@admin.register(Call)
class CallAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Calls are what the contact records say (their queue decides who may see them); the
    pipeline can be re-run from here."""

    show_full_result_count = False  # a big table: one count per page, not two

    visible_through = ("",)
    list_display = [
        "contact_id",
        "hash",
        "channel",
        "queue_name",
        "agent_username",
        "customer_phone",
        "pipeline_status",
        "initiated_at",
    ]
    list_filter = ["pipeline_status", "channel"]
    search_fields = ["contact_id", "hash", "customer_phone", "agent_username"]
    raw_id_fields = ["customer"]
    actions = ["rerun_pipeline"]

    @admin.action(description="Re-run the pipeline (resumes where it stopped)")
    def rerun_pipeline(self, request: HttpRequest, queryset: QuerySet[Call]) -> None:
        from calls.tasks import call_pipeline_start

        if not is_supervisor(request.user):  # docs/security.md: the supervisors' action
            self.message_user(request, "Only supervisors can re-run the pipeline.", messages.ERROR)
            return
        # the sweep's count of restarts starts again, and the audit log says who
        ids = services.call_pipeline_rerun(
            call_ids=list(queryset.values_list("pk", flat=True)), actor=request.user
        )
        for pk in ids:
            call_pipeline_start(pk)
        self.message_user(request, f"{len(ids)} pipeline(s) started.")


# Two kinds of alerts live in the admin: these, about agents' states in Amazon Connect,
# and the alerts app's (alarm rules over the metrics, SLA alerts). The names and the line
# above each page say which is which.
AGENT_STATE_RULES_ABOUT = (
    "Rules over agents' states in Amazon Connect: a state that lasts longer than N "
    "minutes, or offline during a shift. They raise the agent-state alerts shown on the "
    "supervisors' board (/calls/board/), optionally copied to SNS. Not the alarm rules "
    "over the metrics (Alerts → Alert rules)."
)
AGENT_STATE_ALERTS_ABOUT = (
    "What the agent-state alert rules raised: one per rule and state span, shown on the "
    "supervisors' board (/calls/board/). Not the alerts of the alarm rules and the SLA "
    "checker (Alerts → Alerts)."
)
AGENT_STATE_DOCS = "docs/calls.md (Flows: Agent states)"


@admin.register(AlertRule)
class AlertRuleAdmin(AboutAdminMixin, SupervisorAdmin):
    about = AGENT_STATE_RULES_ABOUT
    docs = AGENT_STATE_DOCS
    list_display = [
        "name",
        "kind",
        "state",
        "threshold_minutes",
        "shift_start",
        "shift_end",
        "notify_sns",
        "enabled",
    ]


@admin.register(Alert)
class AlertAdmin(AboutAdminMixin, RecordAdminMixin, SupervisorAdmin):
    about = AGENT_STATE_ALERTS_ABOUT
    docs = AGENT_STATE_DOCS
    list_display = [
        "message",
        "rule",
        "username",
        "created_at",
        "acknowledged_at",
        "acknowledged_by",
    ]
    list_select_related = ["rule", "acknowledged_by"]
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can acknowledge.", messages.ERROR)
            return
        for alert in queryset:
            services.alert_acknowledge(alert=alert, actor=request.user)


def _plain(model: Any, **options: Any) -> None:
    """A record the pipeline writes: listed and shown, not added or edited by hand. One
    about a call (or a ticket) is listed for those who may see that call (and ticket).
    Supervisors (the role) open them all, read-only: they supervise the calls and the
    agents' states (docs/security.md, "Roles")."""
    bases: tuple[type, ...] = (RecordAdminMixin, SupervisorAdmin)
    if options.get("visible_through"):
        bases = (VisibleRowsAdminMixin, *bases)
    admin.site.register(model, type(f"{model.__name__}Admin", bases, options))


_plain(
    Transcript,
    list_display=["call", "source", "updated_at"],
    raw_id_fields=["call"],
    visible_through=("call",),
)
_plain(
    CallAnalytics,
    list_display=["call", "produced_by", "provider", "sentiment", "created_at"],
    raw_id_fields=["call"],
    visible_through=("call",),
)
_plain(
    IVRJourney,
    list_display=["call", "outcome", "failure_kind"],
    list_filter=["outcome"],
    raw_id_fields=["call"],
    visible_through=("call",),
)
_plain(
    Escalation,
    list_display=["call", "kind", "ticket", "created_at"],
    list_select_related=["call", "ticket"],
    raw_id_fields=["call", "ticket"],
    visible_through=("call", "ticket"),
)
_plain(
    AgentStateEvent,
    list_display=["event_id", "event_type", "username", "state", "occurred_at"],
    search_fields=["username", "agent_arn"],
)
_plain(
    AgentStateSpan,
    list_display=["username", "state", "started_at", "ended_at"],
    list_filter=["state"],
)
