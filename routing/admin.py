from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from routing import services
from routing.models import (
    CategoryTeam,
    Outage,
    RouterModel,
    RoutingDecision,
    RoutingFailure,
    RoutingFeedback,
    ServiceStatus,
)
from support.auth.admin import VisibleRowsAdminMixin, admin_link
from tickets.admin import TicketAdmin
from tickets.models import Ticket


def _ticket_link(ticket: Ticket) -> str:
    """The ticket's number, linked to its admin page for those who may open it and see
    it (``admin_link``; the list joins the ticket for the rule)."""
    return admin_link(ticket, text=ticket.number)


@admin.register(CategoryTeam)
class CategoryTeamAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("category", "team", "updated_at")
    list_select_related = ("team",)


class OutageInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Outage
    extra = 0


@admin.register(ServiceStatus)
class ServiceStatusAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("service_id", "name", "state", "keywords", "categories", "updated_at")
    list_filter = ("state",)
    inlines = [OutageInline]


@admin.register(Outage)
class OutageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("title", "service", "is_known_issue", "started_at", "resolved_at")
    list_filter = ("is_known_issue",)


@admin.register(RouterModel)
class RouterModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
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


class RoutingFeedbackInline(VisibleRowsAdminMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = RoutingFeedback
    visible_through = ("ticket",)  # the decision's ticket
    extra = 0
    can_delete = False
    readonly_fields = ("verdict", "team", "priority", "category", "intent", "note", "actor")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingFeedback]:
        return super().get_queryset(request).select_related("team", "actor")


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(VisibleRowsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
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
    search_fields = ("ticket__subject", "ticket__id", "intent", "category")
    list_select_related = ("ticket",)
    raw_id_fields = ("ticket", "team", "router_model")
    inlines = [RoutingFeedbackInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    @admin.display(description="Ticket")
    def ticket_link(self, obj: RoutingDecision) -> str:
        return _ticket_link(obj.ticket)


@admin.register(RoutingFailure)
class RoutingFailureAdmin(VisibleRowsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Tickets whose routing task failed: the permanent ones wait here for a person (the
    sweep leaves them), the transient ones for the sweep's next try."""

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Ticket")
    def ticket_link(self, obj: RoutingFailure) -> str:
        return _ticket_link(obj.ticket)

    @admin.action(description="Route the selected tickets again")
    def route_again(self, request: HttpRequest, queryset: QuerySet[RoutingFailure]) -> None:
        sent = services.routing_failure_redrive(failures=queryset)
        self.message_user(request, f"{sent} ticket(s) sent to routing again.")


class RoutingDecisionInline(admin.TabularInline):  # type: ignore[type-arg]
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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RoutedTicketAdmin(TicketAdmin):
    inlines = [*TicketAdmin.inlines, RoutingDecisionInline]


admin.site.unregister(Ticket)
admin.site.register(Ticket, RoutedTicketAdmin)
