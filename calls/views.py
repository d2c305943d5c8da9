"""Workbench pages: the calls list, a call page, the live agent-state board."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from calls import selectors
from calls.models import PipelineStatus
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
def agent_board(request: HttpRequest) -> HttpResponse:
    """Supervisors only: every agent's live state and the alerts (agents get 403; their
    own state is in the Connect CCP)."""
    if not is_supervisor(request.user):
        raise PermissionDenied
    return render(request, "calls/board.html", selectors.agent_board())
