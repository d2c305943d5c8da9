"""Request guards that apply to every view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from support.errors import error_body
from support.health import PROBES

#: Scraped by Prometheus at each task's address (support/metrics.py; bearer token).
METRICS_PATH = "/metrics"

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NUL_MESSAGE = "NUL characters are not accepted in parameters or form fields."
NUL_PATH_MESSAGE = "NUL characters are not accepted in the URL path."


class HealthProbeMiddleware:
    """Answer the health paths (``support.health.PROBES``) whatever the Host header.

    First in ``MIDDLEWARE``, before ``SecurityMiddleware`` (HTTPS redirect) and
    ``CommonMiddleware`` (``ALLOWED_HOSTS``): a load balancer's health check sends the
    target's IP address as Host and plain HTTP, and the container's own HEALTHCHECK asks
    127.0.0.1. Only these exact paths are served here, with no session, cookie or user, and
    the views read nothing from the request; every other path still goes through the host
    check, so ``ALLOWED_HOSTS`` keeps protecting the rest of the site.

    ``/metrics`` is answered here too: request counters live in each task's web processes
    (support/request_metrics.py), so Prometheus scrapes every task by its IP address, not
    the load balancer's name. The metrics view still requires its bearer token and reads
    nothing else from the request (no Host, cookie, session or user).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        from support.metrics import metrics_view

        self.early: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            **PROBES,
            METRICS_PATH: metrics_view,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.early.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)


class RejectNulCharactersMiddleware:
    """400 for a NUL character in the URL path, the query string or a submitted form.

    PostgreSQL text cannot hold NUL, so a filter, search or form value carrying one used to
    fail in the database (a 500); so did a path segment (``/api/webchat/%00/session``: the
    ``<str:token>`` was looked up as it came). JSON bodies are checked where they are parsed (DRF's
    CharField refuses NUL; free-form JSON is checked by its serializer or service). Forms
    are only read for views that read them anyway (CSRF-protected ones): webhooks (CSRF
    exempt) keep their raw bodies untouched for signature checks.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            return _refuse(request, NUL_PATH_MESSAGE)
        query = request.META.get("QUERY_STRING", "")
        if ("%00" in query or "\x00" in query) and _has_nul(request.GET.lists()):
            return _refuse(request)
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        if request.method in ("GET", "HEAD", "OPTIONS") or getattr(view, "csrf_exempt", False):
            return None
        content_type = request.META.get("CONTENT_TYPE", "")
        is_form = content_type.startswith(FORM_TYPES)
        return _refuse(request) if is_form and _has_nul(request.POST.lists()) else None


def _has_nul(items: Any) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in items)


def _refuse(request: HttpRequest, message: str = NUL_MESSAGE) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("malformed_request", message), status=400)
    return HttpResponseBadRequest(message)
