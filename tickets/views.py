"""Workbench pages (server-rendered). The full workbench grows here."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tickets import selectors


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    tickets = selectors.ticket_list(filters=request.GET.dict())[:50]
    return render(request, "tickets/inbox.html", {"tickets": tickets})
