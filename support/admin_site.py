"""The project's admin site (``admin.site``, installed by ``SupportAdminConfig`` in place of
``django.contrib.admin``): the supervisor console's titles, and the admin request being
served, for the pages that decide per viewer what to show of related objects.

Read-only fields of the admin name and link other objects (Django links a read-only
foreign key to the related object's admin page; the project's own link fields point at
tickets, deliveries, workbench pages). Whether the person looking may open those, or may
see the object at all under the project's visibility rule, depends on who asks, and
Django hands read-only fields and list columns only the object, never the request. So
every admin view runs with its request in :func:`admin_request`, and its page is rendered
before the view returns (a ``TemplateResponse`` is otherwise rendered after it, when the
request would no longer be known): ``support.auth.admin.admin_link`` reads it. Outside an
admin view it is None, and nothing is linked or named that depends on the viewer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from functools import update_wrapper
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponseBase
from django.template.response import SimpleTemplateResponse

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])
_admin_request: ContextVar[HttpRequest | None] = ContextVar("admin_request", default=None)


def admin_request() -> HttpRequest | None:
    """The admin request being served (None outside an admin view)."""
    return _admin_request.get()


class SupportAdminSite(admin.AdminSite):
    site_header = "Support Desk · Supervisor admin"
    site_title = "Support Desk admin"
    index_title = "Supervisor console"

    def admin_view(self, view: _View, cacheable: bool = False) -> _View:
        protected = super().admin_view(view, cacheable)

        def with_viewer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            token = _admin_request.set(request)
            try:
                response = protected(request, *args, **kwargs)
                if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                    response.render()  # while the viewer is known
                return response
            finally:
                _admin_request.reset(token)

        # The CSRF and cache markers of the protected view stay visible to the middleware.
        return cast(_View, update_wrapper(with_viewer, protected))


class SupportAdminConfig(AdminConfig):
    """``django.contrib.admin`` with :class:`SupportAdminSite` as ``admin.site``."""

    default_site = "support.admin_site.SupportAdminSite"

    def ready(self) -> None:
        from support.auth.admin import (
            admin_input_checked,
            list_filters_bounded,
            readonly_relations_checked,
        )

        readonly_relations_checked()
        list_filters_bounded()
        admin_input_checked()
        super().ready()
