from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tickets import services
from tickets.models import (
    Attachment,
    ChannelIdentity,
    Customer,
    Message,
    Tag,
    Team,
    Ticket,
    TicketStatus,
)


class ChannelIdentityInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ChannelIdentity
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "email", "phone", "vip_tier", "account_type", "created_at")
    list_filter = ("vip_tier", "account_type")
    search_fields = ("name", "email", "phone", "identities__external_id")
    inlines = [ChannelIdentityInline]


@admin.register(ChannelIdentity)
class ChannelIdentityAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("channel", "external_id", "customer", "created_at")
    list_filter = ("channel",)
    search_fields = ("external_id", "customer__name", "customer__email")
    raw_id_fields = ("customer",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "member_count")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
    search_fields = ("name",)

    @admin.display(description="Members")
    def member_count(self, obj: Team) -> int:
        return obj.members.count()


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    search_fields = ("name",)


class MessageInline(admin.StackedInline):  # type: ignore[type-arg]
    model = Message
    extra = 0
    can_delete = False
    fields = (
        "created_at",
        "direction",
        "kind",
        "author_user",
        "author_customer",
        "body_text",
        "delivery_status",
        "delivery_error",
    )
    readonly_fields = fields
    ordering = ("created_at", "id")
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TicketAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Ticket
        fields = [
            "customer",
            "subject",
            "status",
            "priority",
            "team",
            "assignee",
            "tags",
            "channel",
            "channel_account_id",
            "origin_platform_id",
            "is_bot_handoff",
            "needs_review",
            "merged_into",
        ]

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if self.instance.pk:
            current = Ticket.objects.only("status").get(pk=self.instance.pk)
            if not current.can_transition_to(status):
                raise forms.ValidationError(f"A {current.status} ticket cannot become {status}.")
        return status


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = TicketAdminForm
    list_display = (
        "number",
        "subject",
        "customer",
        "channel",
        "status",
        "priority",
        "team",
        "assignee",
        "needs_review",
        "created_at",
    )
    list_filter = (
        "status",
        "priority",
        "channel",
        "team",
        "needs_review",
        "is_bot_handoff",
        "tags",
    )
    search_fields = ("subject", "customer__name", "customer__email", "id")
    list_select_related = ("customer", "team", "assignee")
    raw_id_fields = ("customer", "merged_into")
    readonly_fields = (
        "number",
        "correlation_id",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "last_message_at",
        "waiting_since",
        "created_at",
        "updated_at",
    )
    date_hierarchy = "created_at"
    inlines = [MessageInline]
    actions = ["mark_resolved", "mark_closed"]
    list_per_page = 50

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Ticket], status: str) -> None:
        changed, skipped = 0, 0
        for ticket in queryset:
            if ticket.can_transition_to(status):
                services.ticket_update(ticket=ticket, actor=request.user, status=status)
                changed += 1
            else:
                skipped += 1
        self.message_user(
            request,
            f"{changed} ticket(s) now {status}; {skipped} skipped "
            "(that change is not allowed from their status).",
        )

    @admin.action(description="Resolve selected tickets")
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._set_status(request, queryset, TicketStatus.RESOLVED)

    @admin.action(description="Close selected tickets")
    def mark_closed(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._set_status(request, queryset, TicketStatus.CLOSED)

    def save_model(self, request: HttpRequest, obj: Ticket, form: Any, change: bool) -> None:
        # Status, priority and team edits go through the service so they are validated,
        # written to the timeline and published.
        if change and form.initial:
            original = Ticket.objects.get(pk=obj.pk)
            services.ticket_update(
                ticket=original,
                actor=request.user,
                status=obj.status,
                priority=obj.priority,
                team=obj.team,
                subject=obj.subject,
            )
            if obj.assignee_id != original.assignee_id:
                services.ticket_assign(ticket=original, assignee=obj.assignee, actor=request.user)
            return
        super().save_model(request, obj, form, change)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "ticket", "direction", "kind", "channel", "delivery_status", "created_at")
    list_filter = ("direction", "kind", "channel", "delivery_status")
    search_fields = ("body_text", "channel_message_id")
    raw_id_fields = ("ticket", "author_customer", "author_user")


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("filename", "kind", "content_type", "size", "message", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("message",)


from tickets.context.admin import *  # noqa: E402, F403 - customer-context admin
