"""Accounts (secrets write-only), raw inbound events with re-process / release actions, web
chat email verifications (read-only). Outbound replies and verification codes are in the
one deliveries admin (Outbound deliveries → Deliveries, ``support/delivery/admin.py``),
which re-drives their dead letters."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import CharField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast
from django.http import HttpRequest

from channels_app import services
from channels_app.account_settings import account_settings_problems
from channels_app.models import (
    ChannelAccount,
    InboundEvent,
    InboundStatus,
    SentMessageEvent,
    WebchatVerification,
)
from channels_app.services.media import attachment_downloads_redrive
from channels_app.services.staged_uploads import inbound_events_discard
from channels_app.verification import WEBCHAT_CODE_KIND
from support.auth.admin import (
    ExactSearchMixin,
    VisibleRowsAdminMixin,
    admin_link,
    admin_superuser_subject_register,
)
from support.auth.roles import is_supervisor
from support.delivery.models import Delivery
from support.models import DeliveryStatus
from tickets.admin import SupervisorAdmin, attachment_download_redrive_register

# Header names whose values are credentials (case-insensitive): shown hidden in the admin.
_CREDENTIAL_HEADER_RE = re.compile(
    r"authorization|cookie|session|token|secret|api[-_]?key|password", re.IGNORECASE
)

SECRET_FIELDS = services.SECRET_FIELDS

# The Attachments page's "Download again" (the core's admin imports no feature app).
attachment_download_redrive_register(attachment_downloads_redrive)


class ChannelAccountForm(forms.ModelForm):
    """Secrets are never rendered back; leaving a field empty keeps the stored value."""

    class Meta:
        model = ChannelAccount
        fields = [
            "channel",
            "name",
            "external_id",
            *SECRET_FIELDS,
            "client_id",
            "access_token_expires_at",
            "settings",
            "is_active",
        ]
        widgets = {
            name: forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
            for name in SECRET_FIELDS
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            self.fields[name].required = False
            if self.instance.pk and getattr(self.instance, name):
                self.fields[name].help_text = "Set (hidden). Leave empty to keep it."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        channel = data.get("channel") or self.instance.channel
        if channel and "settings" in data:
            for problem in account_settings_problems(channel, data["settings"]):
                self.add_error("settings", problem)
        if self.instance.pk:
            for name in SECRET_FIELDS:
                if not data.get(name):
                    data[name] = getattr(self.instance, name)
        return data


# Accounts hold the channels' credentials: superusers' in the admin, and so are the
# audit-log entries about them (support.admin.AuditLogAdmin).
admin_superuser_subject_register(ChannelAccount)


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    form = ChannelAccountForm
    list_display = [
        "name",
        "channel",
        "external_id",
        "is_active",
        "credentials_ok",
        "rejected_count",
        "webhook",
    ]
    list_filter = ["channel", "is_active"]
    readonly_fields = [
        "auth_error",
        "token_refreshed_at",
        "webhook",
        "rejected_count",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Webhook path")
    def webhook(self, obj: ChannelAccount) -> str:
        return obj.webhook_path if obj.pk else "(after saving)"

    @admin.display(description="Credentials OK", boolean=True)
    def credentials_ok(self, obj: ChannelAccount) -> bool:
        return not obj.auth_error

    def save_model(
        self, request: HttpRequest, obj: ChannelAccount, form: forms.ModelForm, change: bool
    ) -> None:
        """New credentials clear the last credentials error; a new access token without
        a new expiry has an unknown one (refreshed when X refuses it)."""
        if change:
            before = ChannelAccount.objects.get(pk=obj.pk)
            changed = {
                name
                for name in (*SECRET_FIELDS, "client_id")
                if getattr(before, name) != getattr(obj, name)
            }
            if changed:
                obj.auth_error = ""
            if "access_token" in changed and "access_token_expires_at" not in form.changed_data:
                obj.access_token_expires_at = None
        super().save_model(request, obj, form, change)


class SentMessageEventInline(VisibleRowsAdminMixin, admin.TabularInline):  # type: ignore[type-arg]
    """The events about sent mail a delivery carried (SendGrid's Event Webhook: bounces,
    spam reports…) and what each did; read-only. Those about a message of a ticket the
    viewer may not see are left out."""

    visible_through = ("message",)
    model = SentMessageEvent
    fields = ("event", "external_id", "message", "outcome", "occurred_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[SentMessageEvent]:
        return super().get_queryset(request).select_related("message")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(InboundEvent)
class InboundEventAdmin(ExactSearchMixin, VisibleRowsAdminMixin, SupervisorAdmin):
    """Supervisors (the role) see every raw delivery, re-process dead ones, release
    quarantined e-mail and close either unprocessed (status ``closed``); every field is
    read-only (with the sent-mail events it carried).
    A raw delivery is a customer's message as received, tied to no ticket until processed:
    for supervisors only, whatever Django permissions someone else was given."""

    show_full_result_count = False  # a big table: one count per page, not two

    visible_to_supervisors_only = True

    inlines = [SentMessageEventInline]

    list_display = [
        "id",
        "channel",
        "account",
        "status_shown",
        "attempts",
        "received_at",
        "error_short",
    ]
    list_filter = ["status", "channel"]
    search_fields = ["external_id"]
    exact_search_fields = ("external_id",)
    search_help_text = "A delivery's external id (the provider's event or message id), exactly."
    readonly_fields = [
        "channel",
        "account",
        "external_id",
        "headers_shown",
        "body_text",
        "received_at",
        "status",
        "attempts",
        "claims",
        "error",
        "processed_at",
        "summary",
    ]
    exclude = ["body", "headers"]
    actions = ["reprocess", "release", "close_unprocessed"]

    @admin.display(description="Headers")
    def headers_shown(self, obj: InboundEvent) -> str:
        """The stored headers with credentials hidden: a web chat visitor's session token
        (valid for a day: whoever holds it posts and reads as that visitor), an
        ``Authorization`` or cookie, an API key. They stay stored, for re-processing."""
        shown = {
            name: (
                f"[hidden: {len(str(value))} characters]"
                if _CREDENTIAL_HEADER_RE.search(name)
                else value
            )
            for name, value in (obj.headers or {}).items()
        }
        return json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True)

    @admin.display(description="Status", ordering="status")
    def status_shown(self, obj: InboundEvent) -> str:
        """The status, and who closed it where a supervisor did (``inbound_event_close``;
        an erasure blanks the summary that names them, the audit log keeps it)."""
        closed_by = (obj.summary or {}).get("closed_by")
        if obj.status == InboundStatus.CLOSED and closed_by:
            return f"Closed unprocessed by {closed_by}"
        return str(obj.get_status_display())

    @admin.display(description="Error")
    def error_short(self, obj: InboundEvent) -> str:
        return obj.error[:80]

    @admin.display(description="Body")
    def body_text(self, obj: InboundEvent) -> str:
        return obj.body_bytes.decode("utf-8", errors="replace")[:20000]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Deleting (Django's delete permission: superusers) discards a delivery; a web chat
    # visitor's file it names, still staged, goes with it after the commit.
    def delete_model(self, request: HttpRequest, obj: InboundEvent) -> None:
        inbound_events_discard(events=InboundEvent.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        inbound_events_discard(events=queryset)

    @admin.action(description="Re-process the selected events")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can re-process.", messages.ERROR)
            return
        events = list(queryset)
        queued = sum(
            services.inbound_event_reprocess(event=event, actor=request.user) for event in events
        )
        left = len(events) - queued
        note = f"; {left} left as they were (erased: nothing left to process)" if left else ""
        self.message_user(request, f"{queued} event(s) queued for processing{note}.")

    @admin.action(description="Release quarantined e-mail (create it, marked suspicious)")
    def release(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can release.", messages.ERROR)
            return
        released = sum(
            services.inbound_event_release(event=event, actor=request.user) for event in queryset
        )
        self.message_user(request, f"{released} quarantined event(s) released.")

    @admin.action(description="Close the selected dead letters / quarantined e-mail unprocessed")
    def close_unprocessed(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can close events.", messages.ERROR)
            return
        events = list(queryset)  # the selection as chosen (closing moves them out of a filter)
        closed = sum(
            services.inbound_event_close(event=event, actor=request.user) for event in events
        )
        skipped = len(events) - closed
        note = f"; {skipped} left as they were (not dead or quarantined)" if skipped else ""
        self.message_user(request, f"{closed} event(s) closed unprocessed{note}.")


@admin.register(WebchatVerification)
class WebchatVerificationAdmin(VisibleRowsAdminMixin, admin.ModelAdmin):
    """Web chat email verifications and whether each was confirmed; each code's sending
    (attempts, dead letters) is a delivery in the deliveries admin. Read-only: a code that
    failed to go out is simply asked for again by the visitor (codes expire within
    minutes)."""

    visible_through = ("customer",)
    # before it names a customer a verification is a visitor's typed address: supervisors'
    visible_unlinked_to_supervisors_only = True
    list_display = [
        "id",
        "email",
        "visitor_id",
        "code_delivery",
        "failed_checks",
        "verified_at",
        "created_at",
    ]
    search_fields = ["email", "visitor_id"]
    exclude = ["code_salt"]
    readonly_fields = ["code_delivery"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebchatVerification]:
        # Each code's delivery joins the list's query (one query, not one per row).
        deliveries = Delivery.objects.filter(
            target_kind=WEBCHAT_CODE_KIND,
            subject_type="webchat_verification",
            subject_id=Cast(OuterRef("pk"), CharField()),
        ).order_by("pk")
        return (
            super()
            .get_queryset(request)
            .annotate(
                code_delivery_id=Subquery(deliveries.values("pk")[:1]),
                code_delivery_status=Subquery(deliveries.values("status")[:1]),
            )
        )

    @admin.display(description="Code delivery")
    def code_delivery(self, obj: WebchatVerification) -> str:
        delivery_id = getattr(obj, "code_delivery_id", None)
        if delivery_id is None:
            return "—"
        status = DeliveryStatus(getattr(obj, "code_delivery_status", "")).label
        # Linked only for those who may open the deliveries admin (the row is not loaded:
        # that page's permission does not depend on the delivery).
        return admin_link(Delivery(pk=delivery_id), text=status)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
