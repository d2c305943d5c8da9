from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from routing import selectors, services
from routing.models import (
    CategoryTeam,
    Outage,
    RouterModel,
    RoutingDecision,
    RoutingFailure,
    RoutingFeedback,
    ServiceStatus,
)
from support.auth.admin import (
    ExactSearchMixin,
    RecordAdminMixin,
    SupervisorAdmin,
    SupervisorInlineMixin,
    VisibleRowsAdminMixin,
    admin_link,
)
from support.auth.roles import is_supervisor
from tickets.admin import TicketAdmin
from tickets.models import Ticket


def _ticket_link(ticket: Ticket) -> str:
    """The ticket's number, linked to its admin page for those who may open it and see
    it (``admin_link``; the list joins the ticket for the rule)."""
    return admin_link(ticket, text=ticket.number)


# Who does what here (docs/security.md, "Roles"; docs/routing.md): supervisors keep the
# routing configuration (the category -> team map, the services' status and outages) as
# they keep the queue -> team map, open the routing records (decisions, failures) and route
# failed tickets again; trained router models stay the superusers'. Deleting needs Django
# permissions everywhere.


class CategoryTeamForm(forms.ModelForm):  # type: ignore[type-arg]
    """The category is chosen among those decisions can carry (``known_categories``), so a
    row always matches; a row saved before under another name keeps it, marked."""

    class Meta:
        model = CategoryTeam
        fields = ("category", "team")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(c, c) for c in selectors.known_categories()]
        current = self.instance.category if self.instance.pk else ""
        if current and current not in dict(choices):
            choices.insert(0, (current, f"{current} (no router or default category)"))
        self.fields["category"] = forms.ChoiceField(
            choices=[("", "---------"), *choices],
            help_text="The categories of the built-in map and of the active router model.",
        )


@admin.register(CategoryTeam)
class CategoryTeamAdmin(SupervisorAdmin):
    """Supervisors: the category -> team map ``route_to_team`` reads (its rows win over the
    defaults) is routing configuration, like the queue -> team map of calls they already
    keep; a change applies to the tickets routed from then on."""

    form = CategoryTeamForm
    list_display = ("category", "team", "updated_at")
    list_select_related = ("team",)


class OutageInline(SupervisorInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    """A service's outages, added here by supervisors too (resolved by setting when they
    ended: deleting one needs Django permissions)."""

    model = Outage
    extra = 0
    readonly_fields = ("external_id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_add_permission(request, obj)


@admin.register(ServiceStatus)
class ServiceStatusAdmin(SupervisorAdmin):
    """Supervisors: seed 004's service status, which the ``check_service_status`` tool reads
    (a matching open outage raises a ticket's priority, a known issue less so): declaring
    an outage or known issue and the service's state is a supervisor's call, like an SLA
    policy. With ``ROUTING_STATUS_URL`` set, the poll rewrites the name and state of the
    services it lists and resolves their outages it no longer lists (those with its
    ``external_id``, shown read-only: an outage declared here has none and is left alone)."""

    list_display = ("service_id", "name", "state", "keywords", "categories", "updated_at")
    list_filter = ("state",)
    inlines = [OutageInline]


@admin.register(Outage)
class OutageAdmin(SupervisorAdmin):
    """Supervisors declare an outage or known issue and resolve it (``resolved_at``); the
    status endpoint's key (``external_id``) is the poll's, read-only here: one set by hand
    would let the next poll resolve or rewrite the outage. See ``ServiceStatusAdmin``."""

    list_display = ("title", "service", "is_known_issue", "started_at", "resolved_at")
    list_filter = ("is_known_issue",)
    list_select_related = ("service",)
    readonly_fields = ("external_id",)


@admin.register(RouterModel)
class RouterModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Superusers only (Django permissions): a trained model is a signed artifact made
    with the deployment's key (``train_router``), and activating one changes how every
    ticket is routed from then on: an operator's act, like a release."""

    list_display = ("name", "version", "is_active", "features", "created_at")
    readonly_fields = ("labels", "label_to_category", "metrics", "training", "artifact_sha256")
    exclude = ("artifact",)
    actions = ["activate"]

    @admin.action(description="Activate (roll back / forward to) the selected model")
    def activate(self, request: HttpRequest, queryset: QuerySet[RouterModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        services.router_model_activate(model=queryset.get())
        self.message_user(request, "Activated.")


class RoutingFeedbackInline(
    VisibleRowsAdminMixin,
    RecordAdminMixin,
    SupervisorInlineMixin,
    admin.TabularInline,  # type: ignore[type-arg]
):
    model = RoutingFeedback
    visible_through = ("ticket",)  # the decision's ticket
    extra = 0
    can_delete = False
    readonly_fields = ("verdict", "team", "priority", "category", "intent", "note", "actor")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingFeedback]:
        return super().get_queryset(request).select_related("team", "actor")


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(
    ExactSearchMixin, VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin
):
    """Supervisors open every decision (the router's inputs, reasons and tool trace; the
    review queue's "why"), others those of the tickets they may see. A record of what the
    router did: never made or edited by hand (agents' verdicts go through the ticket's
    routing panel)."""

    show_full_result_count = False  # a big table: one count per page, not two

    visible_through = ("ticket",)
    list_display = (
        "ticket_link",
        "team_slug",
        "priority",
        "confidence",
        "requires_manual_review",
        "out_of_scope",
        "provider",
        "fallback_from",
        "sync_status",
        "created_at",
    )
    list_filter = (
        "requires_manual_review",
        "out_of_scope",
        "provider",
        "sync_status",
        "priority",
        "category",
    )
    search_fields = ("ticket__id",)
    exact_search_fields = ("ticket", "intent", "category")
    search_help_text = "A ticket's id, an intent or a category, exactly."
    list_select_related = ("ticket",)
    raw_id_fields = ("ticket", "team", "router_model")
    inlines = [RoutingFeedbackInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description="Ticket")
    def ticket_link(self, obj: RoutingDecision) -> str:
        return _ticket_link(obj.ticket)


@admin.register(RoutingFailure)
class RoutingFailureAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Tickets whose routing task failed: the permanent ones wait here for a person (the
    sweep leaves them), the transient ones for the sweep's next try. Supervisors route them
    again (audit-logged); the records are the task's, never made or edited by hand."""

    visible_through = ("ticket",)
    list_display = (
        "ticket_link",
        "permanent",
        "attempts",
        "next_attempt_at",
        "error",
        "updated_at",
    )
    list_filter = ("permanent",)
    list_select_related = ("ticket",)
    search_fields = ("ticket__id", "error")
    actions = ["route_again"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description="Ticket")
    def ticket_link(self, obj: RoutingFailure) -> str:
        return _ticket_link(obj.ticket)

    @admin.action(description="Route the selected tickets again")
    def route_again(self, request: HttpRequest, queryset: QuerySet[RoutingFailure]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can route tickets again.", messages.ERROR)
            return
        sent = services.routing_failure_redrive(failures=queryset, actor=request.user)
        self.message_user(request, f"{sent} ticket(s) sent to routing again.")


class RoutingDecisionInline(
    RecordAdminMixin,
    SupervisorInlineMixin,
    admin.TabularInline,  # type: ignore[type-arg]
):
    """The ticket's decisions, read-only, for those who may open its page (supervisors
    included); each links to its decision's page."""

    model = RoutingDecision
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "created_at",
        "team_slug",
        "priority",
        "confidence",
        "requires_manual_review",
        "provider",
        "reasoning",
    )
    readonly_fields = fields


class RoutedTicketAdmin(TicketAdmin):
    inlines = [*TicketAdmin.inlines, RoutingDecisionInline]


admin.site.unregister(Ticket)
admin.site.register(Ticket, RoutedTicketAdmin)
