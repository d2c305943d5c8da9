"""Workbench pages: the calls list, a call page, the live agent-state board."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from calls import selectors, services
from calls.models import Alert, PipelineStatus
from support.auth.roles import is_agent, is_supervisor
from support.errors import InvalidInput, NotFound


def _agent_only(request: HttpRequest) -> None:
    if not is_agent(request.user):
        raise PermissionDenied


#: The calls list shows the newest this many; the search and status filter find older ones.
CALL_LIST_LIMIT = 100


@login_required
def call_list(request: HttpRequest) -> HttpResponse:
    """The calls the user may see, newest first, searched by contact id or phone (``q``)
    and filtered by pipeline status (``status``). A bad filter is the page again with the
    reason (400; it was the reason alone as plain text)."""
    _agent_only(request)
    filters = {key: value for key in ("q", "status") if (value := request.GET.get(key, "").strip())}
    context: dict[str, Any] = {
        "filters": filters,
        "statuses": PipelineStatus.choices,
        "limit": CALL_LIST_LIMIT,
    }
    try:
        calls = list(selectors.call_list(user=request.user, filters=filters)[: CALL_LIST_LIMIT + 1])
    except InvalidInput as exc:
        context.update({"calls": [], "error": exc.message})
        return render(request, "calls/list.html", context, status=400)
    context.update({"calls": calls[:CALL_LIST_LIMIT], "more": len(calls) > CALL_LIST_LIMIT})
    return render(request, "calls/list.html", context)


@login_required
def call_detail(request: HttpRequest, hash: str) -> HttpResponse:
    _agent_only(request)
    try:
        call = selectors.call_get_visible(hash=hash, user=request.user)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    context = {
        "call": call,
        "analytics": getattr(call, "analytics", None),
        "transcript": getattr(call, "transcript", None),
        "journey": getattr(call, "ivr_journey", None),
        "escalations": selectors.call_escalations(call=call, user=request.user),
    }
    return render(request, "calls/detail.html", context)


@login_required
@require_GET
def agent_board(request: HttpRequest) -> HttpResponse:
    """Supervisors only: every agent's live state and the alerts (agents get 403; their
    own state is in the Connect CCP)."""
    if not is_supervisor(request.user):
        raise PermissionDenied
    context = selectors.agent_board()
    # Times of today show the clock only, older ones their day too (a span from yesterday
    # read "02:26" and looked like this morning).
    context["today"] = timezone.localdate().isoformat()
    # For states that change live (a data attribute: the page runs no inline script).
    context["state_limits_json"] = json.dumps(context["state_limits"], sort_keys=True)
    return render(request, "calls/board.html", context)


@login_required
@require_POST
def board_alert_acknowledge(request: HttpRequest, agent_alert_id: int) -> HttpResponse:
    """The board's Acknowledge button (supervisors; POST with CSRF): the alert leaves every
    open board and keeps who acknowledged it. Back to the board, saying so."""
    if not is_supervisor(request.user):
        raise PermissionDenied
    alert = Alert.objects.select_related("span").filter(pk=agent_alert_id).first()
    if alert is None:
        raise Http404("No such alert.")
    if alert.acknowledged_at is not None:
        messages.info(request, "That alert was already acknowledged.")
    else:
        services.alert_acknowledge(alert=alert, actor=request.user)
        messages.success(request, f"Acknowledged: {alert.message}")
    return redirect("calls:board")
