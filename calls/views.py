"""Workbench pages: the calls list, a call page, the live agent-state board."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from calls import selectors
from support.auth.roles import is_agent, is_supervisor
from support.errors import InvalidInput, NotFound


def _agent_only(request: HttpRequest) -> None:
    if not is_agent(request.user):
        raise PermissionDenied


@login_required
def call_list(request: HttpRequest) -> HttpResponse:
    _agent_only(request)
    try:
        calls = selectors.call_list(user=request.user, filters=request.GET.dict())[:100]
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message)
    return render(request, "calls/list.html", {"calls": calls})


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
