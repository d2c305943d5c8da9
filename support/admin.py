from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from support import services
from support.auth.admin import RecordAdminMixin
from support.auth.lockout import login_lockout_reset
from support.auth.roles import is_supervisor
from support.models import ApiKey, AuditLog, OidcIdentity, OutboxEvent

admin.site.site_header = "Support Desk · Supervisor admin"
admin.site.site_title = "Support Desk admin"
admin.site.index_title = "Supervisor console"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "name",
        "prefix",
        "user",
        "role",
        "rate_limit_per_minute",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("role", "revoked_at")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = (
        "name",
        "user",
        "role",
        "rate_limit_per_minute",
        "expires_at",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            services.forget_api_key(obj.key_hash)  # a role change applies at once here
            return
        key, raw = services.api_key_create(
            name=obj.name,
            user=obj.user,
            rate_limit_per_minute=obj.rate_limit_per_minute,
            expires_at=obj.expires_at,
            role=obj.role,
        )
        obj.pk = key.pk
        obj.prefix, obj.key_hash = key.prefix, key.key_hash
        messages.warning(
            request, f"API key created. Copy it now, it will not be shown again: {raw}"
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.api_key_revoke(api_key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(OidcIdentity)
class OidcIdentityAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Which provider subject signs in as which local user (written at each SSO sign-in).
    Adding a row here is how a superuser, or a second provider account of an address
    another subject already uses, is let in through SSO: e-mail matching never takes
    those (``support.selectors.oidc_email_match_refusal``). Superusers only."""

    list_display = ("user", "issuer", "subject", "created_at", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email", "subject", "issuer")
    autocomplete_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "created_at",
        "delivered_at",
        "failed_at",
        "attempts",
    )
    list_filter = (
        "event_type",
        ("delivered_at", admin.EmptyFieldListFilter),
        ("failed_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("aggregate_id", "event_type")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["redrive"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Re-drive selected undelivered events")
    def redrive(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = services.outbox_redrive(event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Re-queued {count} event(s).")


@admin.register(AuditLog)
class AuditLogAdmin(RecordAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("created_at", "actor", "action", "object_type", "object_id")
    list_select_related = ("actor",)
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor__username")
    readonly_fields = [f.name for f in AuditLog._meta.fields]


# --- login lockouts (django-axes) -------------------------------------------------------
# axes registers its own admin for failed sign-ins; ours lets supervisors (the role, not
# per-model permissions) see them and unlock, with an audit-log entry per unlock.
admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LoginLockoutAdmin(AccessAttemptAdmin):
    actions = ["unlock_usernames", "unlock_ip_addresses"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_supervisor(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        return is_supervisor(request.user) or super().has_delete_permission(request)

    @admin.action(description="Unlock the selected usernames", permissions=["unlock"])
    def unlock_usernames(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        names = sorted({n for n in queryset.values_list("username", flat=True) if n})
        login_lockout_reset(actor=request.user, usernames=names)
        self.message_user(request, f"Unlocked {len(names)} username(s): {', '.join(names)}.")

    @admin.action(description="Unlock the selected IP addresses", permissions=["unlock"])
    def unlock_ip_addresses(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        ips = sorted({ip for ip in queryset.values_list("ip_address", flat=True) if ip})
        login_lockout_reset(actor=request.user, ip_addresses=ips)
        self.message_user(request, f"Unlocked {len(ips)} IP address(es): {', '.join(ips)}.")
