"""The alerts pages (supervisors only): the list with state/severity filters, and one
alert with its history and the acknowledge / resolve buttons (POST, CSRF)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from alerts import selectors, services
from alerts.models import AlertState, Severity
from support.auth.roles import is_supervisor


def _supervisor_only(request: HttpRequest) -> None:
    if not is_supervisor(request.user):
        raise PermissionDenied


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    _supervisor_only(request)
    state = request.GET.get("state", "open")
    severity = request.GET.get("severity", "")
    context: dict[str, Any] = {
        "state": state,
        "severity": severity,
        "states": [("open", "Open"), *AlertState.choices, ("", "All")],
        "severities": Severity.choices,
    }
    # An unknown value is refused saying so (it quietly became "Open" / "All", a list that
    # looked like the answer to what was asked)
    refused = [
        f"{name}: unknown value {value!r}; one of {', '.join(allowed)}."
        for name, value, allowed in (
            ("state", state, ["open", *AlertState.values]),
            ("severity", severity, Severity.values),
        )
        if value and value not in allowed
    ]
    if refused:
        context.update({"alerts": [], "error": " ".join(refused)})
        return render(request, "alerts/list.html", context, status=400)
    context["alerts"] = selectors.alert_list(state=state, severity=severity)
    return render(request, "alerts/list.html", context)


@login_required
@require_GET
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    _supervisor_only(request)
    alert = selectors.alert_get(alert_id=alert_id)
    if alert is None:
        raise Http404("No such alert.")
    history = alert.history.select_related("actor").order_by("created_at", "id")
    evaluations = selectors.rule_evaluation_list(rule_id=alert.rule_id) if alert.rule_id else []
    return render(
        request,
        "alerts/detail.html",
        {"alert": alert, "history": history, "evaluations": evaluations},
    )


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    _supervisor_only(request)
    note = request.POST.get("note", "")[:1000]
    try:
        services.alert_acknowledge(alert_id=alert_id, actor=request.user, note=note)
        messages.success(request, "Alert acknowledged.")
    except services.AlertStateError as exc:
        messages.error(request, f"Not acknowledged: {exc}")
    except services.Alert.DoesNotExist:
        raise Http404("No such alert.") from None
    return redirect(_next(request, alert_id))


@login_required
@require_POST
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    _supervisor_only(request)
    note = request.POST.get("note", "")[:1000]
    try:
        services.alert_resolve(alert_id=alert_id, actor=request.user, note=note)
        messages.success(request, "Alert resolved.")
    except services.AlertStateError as exc:
        messages.error(request, f"Not resolved: {exc}")
    except services.Alert.DoesNotExist:
        raise Http404("No such alert.") from None
    return redirect(_next(request, alert_id))


def _next(request: HttpRequest, alert_id: int) -> str:
    """Back to the dashboard when the button was there (a local path only)."""
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return f"/alerts/{alert_id}/"
