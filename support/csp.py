"""Content-Security-Policy on every response (django-csp), plus the parts that depend on
the request.

The policy itself is ``CONTENT_SECURITY_POLICY`` in settings: ``default-src 'self'``, scripts
and styles only from our own static files (no ``'unsafe-inline'``, no ``'unsafe-eval'``, no
nonces), ``object-src 'none'``, ``base-uri 'self'``, ``form-action 'self'`` and
``frame-ancestors 'none'``. A stored-XSS payload that slips past escaping still cannot run:
inline scripts, ``on*=`` handlers and ``javascript:`` URLs are all refused by the browser.

This middleware adds, per request:

- ``connect-src`` for the workbench's websockets (``/ws/workbench/``, ``/ws/events/``):
  ``wss://<host>`` (and ``ws://<host>`` on plain-HTTP development servers). ``'self'`` covers
  same-host websockets in current browsers; naming them keeps older ones working too.
- ``style-src 'unsafe-inline'`` under :data:`INLINE_STYLE_PREFIXES` only: Django's admin
  templates (5.2) still carry an inline ``<style>`` block (``admin/change_list.html``) and so
  does the Swagger UI page; scripts stay locked down there as everywhere else.
"""

from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.response import HttpResponseBase

INLINE_STYLE_PREFIXES = ("/admin/", "/api/docs/")


def websocket_sources(request: HttpRequest) -> list[str]:
    """The websocket origins of this host (validated against ALLOWED_HOSTS)."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return []
    if request.is_secure():
        return [f"wss://{host}"]
    return [f"ws://{host}", f"wss://{host}"]


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware with the request-dependent sources added."""

    def get_policy_parts(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        report_only: bool = False,
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), *websocket_sources(request)]
        if request.path_info.startswith(INLINE_STYLE_PREFIXES):
            update["style-src"] = [*update.get("style-src", []), UNSAFE_INLINE]
        parts.update = update
        return parts
