"""Base classes for admin pages that the supervisor role may use.

They live here (shared infrastructure) so that both the core's admin (``tickets.admin``,
which re-exports them) and shared apps such as ``support.delivery`` subclass one definition
without ``support`` importing the core."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from support.auth.roles import is_supervisor


class SupervisorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Supervisors (the role, a group) may use these admin pages without per-model Django
    permissions; deleting stays with explicit permissions (superusers)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_supervisor(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_supervisor(request.user) or super().has_add_permission(request, *args)


class RecordAdminMixin:
    """Records the system writes (jobs, received events, feedback): shown, never added or
    edited by hand, whoever asks (a hand-made record would be taken for a real one: a
    forged received-event key, say, makes the real event look like a duplicate)."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SupervisorInlineMixin:
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_change_permission(request, obj)  # type: ignore[misc]
