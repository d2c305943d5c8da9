"""Base classes for admin pages that the supervisor role may use.

They live here (shared infrastructure) so that both the core's admin (``tickets.admin``,
which re-exports them) and shared apps such as ``support.delivery`` subclass one definition
without ``support`` importing the core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from support.admin_site import admin_request
from support.auth.roles import is_agent, is_supervisor


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


class AboutAdminMixin:
    """A line above the list and the form saying what these rows are (``about``) and the
    page of the project's documentation that explains them (``docs``, a path in the
    repository's ``docs/``: the application does not serve its documentation). Shown by
    ``templates/admin/base_site.html``."""

    about: str = ""
    docs: str = ""

    def _about_context(self, extra_context: dict[str, Any] | None) -> dict[str, Any]:
        return {**(extra_context or {}), "admin_about": self.about, "admin_docs": self.docs}

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return super().changelist_view(request, self._about_context(extra_context))  # type: ignore[misc]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        return super().changeform_view(  # type: ignore[misc]
            request, object_id, form_url, self._about_context(extra_context)
        )


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


# --- links to related objects: only to what the viewer may open -------------------------

#: ``rule(user, obj)``: may this person see ``obj`` outside the admin (the workbench, the
#: API)? Registered by the apps that own a visibility rule (``tickets.admin``: tickets,
#: customers, messages, attachments; ``calls.admin``: calls), since this module imports
#: no feature app.
VisibilityRule = Callable[[Any, Any], bool]
_VISIBILITY: dict[type[Model], VisibilityRule] = {}


def admin_visibility_register(model: type[Model], rule: VisibilityRule) -> None:
    _VISIBILITY[model] = rule


def admin_visible(user: Any, obj: Model) -> bool:
    """Whether ``user`` may see ``obj`` under the project's visibility rule for its model
    (True for models without one). A rule holds only for people in a role (agents and
    supervisors): someone in neither sees nothing outside the admin."""
    rule = _VISIBILITY.get(obj._meta.concrete_model or type(obj))
    if rule is None:
        return True
    return user is not None and is_agent(user) and rule(user, obj)


def hidden_text(obj: Model) -> str:
    """What stands for an object the viewer may not see: its kind, nothing of its data."""
    return f"(a {obj._meta.verbose_name} you cannot see)"


def admin_link(obj: Model | None, *, text: str | None = None, site: Any = None) -> str:
    """How an admin page shows a related object to the admin user being served
    (:func:`support.admin_site.admin_request`):

    - a link to its admin page when they may open that page (the page's own
      ``has_view_permission``: Django permissions, or the supervisor role on
      ``SupervisorAdmin`` pages) *and* may see the object under its visibility rule;
    - its name as plain text when they may do one of the two (the name is reachable to
      them anyway);
    - otherwise :func:`hidden_text`, which names no data of it.

    ``text`` replaces ``str(obj)``. Outside an admin request nothing is linked, and
    objects under a visibility rule are hidden."""
    if obj is None:
        return "-"
    request = admin_request()
    user = getattr(request, "user", None)
    label = str(obj) if text is None else text
    opts = obj._meta
    site = site or admin.site
    model_admin = site._registry.get(opts.model) or site._registry.get(opts.concrete_model)
    may_open = bool(
        request is not None
        and model_admin is not None
        and model_admin.has_view_permission(request, obj)
    )
    visible = admin_visible(user, obj)
    if may_open and visible:
        try:
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[quote(obj.pk)],
                current_app=site.name,
            )
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)
    if may_open or visible:
        return label
    return hidden_text(obj)


def _readonly_relation(
    self: helpers.AdminReadonlyField, remote_field: Any, remote_obj: Model
) -> str:
    """``AdminReadonlyField.get_admin_url`` as the project has it: :func:`admin_link`.
    Django 5.2's links a read-only foreign key to the related object's change page
    whenever that page exists, naming the object, without asking whether the viewer may
    open it or see it."""
    return admin_link(remote_obj, site=getattr(self.model_admin, "admin_site", None))


def readonly_relations_checked() -> None:
    """Installed once, by ``support.admin_site.SupportAdminConfig.ready()``."""
    helpers.AdminReadonlyField.get_admin_url = _readonly_relation  # type: ignore[attr-defined]
