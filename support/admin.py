from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from support import services
from support.auth.admin import (
    ExactSearchMixin,
    RecordAdminMixin,
    SupervisorAdmin,
    VisibleRowsAdminMixin,
    admin_superuser_subject_register,
)
from support.auth.lockout import lockout_keys, login_attempts_with_lockout, login_lockout_reset
from support.auth.roles import is_supervisor
from support.models import ApiKey, AuditLog, OidcIdentity, OutboxEvent

# Credentials and people's sign-in identities are superusers' in the admin, and so are the
# audit-log entries about them (AuditLogAdmin).
admin_superuser_subject_register(ApiKey)
admin_superuser_subject_register(OidcIdentity)


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
class OutboxEventAdmin(ExactSearchMixin, VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Domain events on their way to the sinks and subscribers; those the relay gave up on
    (filter "failed at": not empty) wait here for a supervisor's re-drive, as the other
    dead letters do (Outbound deliveries, Call events, Object events): the supervisor role
    uses the page without model permissions, and each re-drive is audited. Records the
    system writes: never added or edited by hand."""

    show_full_result_count = False  # a big table: one count per page, not two

    # An event about a ticket or a call carries its data: listed for those who may see it.
    visible_subject = ("aggregate_type", "aggregate_id")
    # an event about an alert (alert.changed): supervisors'
    visible_other_subjects_to_supervisors_only = True
    # an event about a user (agent.access_changed: who gained or lost a role) or another
    # person or credential: superusers' only, as the audit log's entries about them
    visible_superuser_subjects_hidden = True
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
    search_fields = ("aggregate_id",)
    exact_search_fields = ("aggregate_id", "event_type")
    search_help_text = "A ticket's or call's id, or an event type (ticket.created), exactly."
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["redrive"]

    @admin.action(description="Re-drive the selected failed events")
    def redrive(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        if not is_supervisor(request.user):  # as the outbound deliveries' re-drive
            self.message_user(request, "Only supervisors can re-drive.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        count = services.outbox_redrive(event_ids=ids, actor=request.user)
        skipped = len(ids) - count
        note = f" ({skipped} not failed, left alone)" if skipped else ""
        self.message_user(request, f"Re-queued {count} event(s){note}.")


@admin.register(AuditLog)
class AuditLogAdmin(ExactSearchMixin, VisibleRowsAdminMixin, RecordAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    show_full_result_count = False  # a big table: one count per page, not two
    # What was done to a ticket or a customer: listed for those who may see it.
    visible_subject = ("object_type", "object_id")
    # What was done to a user, an API key or a channel account (people, credentials):
    # superusers' only, as those objects' own pages are, whatever permission else.
    visible_superuser_subjects_hidden = True
    list_display = ("created_at", "actor", "action", "object_type", "object_id")
    list_select_related = ("actor",)
    list_filter = ("action", "object_type")
    search_fields = ("object_id",)
    exact_search_fields = ("object_id", "actor__username")
    search_help_text = "An object's id or the username of who acted, exactly."
    readonly_fields = [f.name for f in AuditLog._meta.fields]


# --- login lockouts (django-axes) -------------------------------------------------------
# axes registers admin pages for three models; with this configuration only one is
# written. Access attempts (failed sign-ins, what lockouts are counted from) are recorded
# by axes' default handler, the database one (AXES_HANDLER is not set; with the cache
# handler nothing would be, and the page is left out as well). Successful
# sign-ins are not logged (AXES_DISABLE_ACCESS_LOG) and the failure log is off
# (AXES_ENABLE_ACCESS_FAILURE_LOG unset): those two pages would stay empty for ever, and
# an empty "Access failures" page reads as "nobody failed to sign in". They are shown
# again if the setting that writes them is turned on.
if getattr(settings, "AXES_DISABLE_ACCESS_LOG", False) and admin.site.is_registered(AccessLog):
    admin.site.unregister(AccessLog)
if not getattr(settings, "AXES_ENABLE_ACCESS_FAILURE_LOG", False) and admin.site.is_registered(
    AccessFailureLog
):
    admin.site.unregister(AccessFailureLog)
# The attempts page is ours (registered below): it lets supervisors (the role, not
# per-model permissions) see them and unlock, with an audit-log entry per unlock, and says
# whether each record's username or address is locked out now (axes' own "status"
# compares one record's count with the limit, but a username's failures are spread over
# one record per address and browser, and a record past the lockout time no longer
# counts).
if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
_DATABASE_HANDLER = "axes.handlers.database.AxesDatabaseHandler"

_LOCKOUT_KEY_NAMES = {"username": "username", "ip_address": "IP"}


class LockedOutNowFilter(admin.SimpleListFilter):
    title = "locked out now"
    parameter_name = "locked_now"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        locked = Q()
        for i in range(len(lockout_keys())):
            locked |= Q(**{f"lockout_failures_{i}__gte": settings.AXES_FAILURE_LIMIT})
        if self.value() == "yes":
            return queryset.filter(locked)
        if self.value() == "no":
            return queryset.exclude(locked)
        return queryset


class LoginLockoutAdmin(AccessAttemptAdmin):
    list_display = [
        "attempt_time",
        "username",
        "ip_address",
        "failures_since_start",
        "lockout",
        "user_agent",
        "path_info",
    ]
    list_filter = ["attempt_time", LockedOutNowFilter]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "username",
                    "ip_address",
                    "failures_since_start",
                    "attempt_time",
                    "lockout",
                    "path_info",
                )
            },
        ),
        ("Form data (passwords masked)", {"fields": ("get_data", "post_data")}),
        ("Browser", {"fields": ("user_agent", "http_accept")}),
    )
    readonly_fields = [*AccessAttemptAdmin.readonly_fields, "lockout"]
    actions = ["unlock_usernames", "unlock_ip_addresses"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessAttempt]:
        return login_attempts_with_lockout(super().get_queryset(request))

    @admin.display(description="Lockout now")
    def lockout(self, obj: AccessAttempt) -> str:
        """Whether a sign-in with this record's username, or from its address, is refused
        now: the failures within the lockout time of every record sharing them (axes'
        rule), and when the lockout ends at the latest (the lockout time after the newest
        of those failures; sooner if older ones leave the window first)."""
        limit = settings.AXES_FAILURE_LIMIT
        cooloff = settings.AXES_COOLOFF_TIME
        if obj.attempt_time < timezone.now() - cooloff:
            counted = "this record no longer counts (older than the lockout time)"
        else:
            counted = ""
        locked, most = [], 0
        for i, fields in enumerate(lockout_keys()):
            failures = getattr(obj, f"lockout_failures_{i}", None) or 0
            most = max(most, failures)
            latest = getattr(obj, f"lockout_latest_{i}", None)
            if failures >= limit and latest is not None:
                key = " from ".join(
                    f"{_LOCKOUT_KEY_NAMES.get(f, f)} {getattr(obj, f)}" for f in fields
                )
                until = timezone.localtime(latest + cooloff)
                locked.append(
                    f"{key} ({failures} failures) until {until:%Y-%m-%d %H:%M} at the latest"
                )
        if locked:
            return "Locked out: " + "; ".join(locked)
        state = f"Not locked ({most} of {limit} failures within the lockout time)"
        return f"{state}; {counted}" if counted else state

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


if getattr(settings, "AXES_HANDLER", _DATABASE_HANDLER) == _DATABASE_HANDLER:
    admin.site.register(AccessAttempt, LoginLockoutAdmin)
