"""The public feedback page behind the signed link (no login: the token is the key)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from support.errors import ApplicationError
from support.parsing import parse_id
from tickets.context import services


def feedback_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        ticket_id = services.feedback_token_ticket_id(token)
        ticket = services.ticket_for_feedback(ticket_id=ticket_id)
    except ApplicationError as exc:
        return render(request, "tickets/context/feedback.html", {"error": exc.message}, status=403)
    context: dict[str, object] = {"ticket": ticket, "ratings": range(1, 6)}
    if request.method == "POST":
        raw = request.POST.get("rating", "")
        try:
            services.feedback_submit(
                ticket=ticket,
                rating=parse_id(raw) or 0,
                comment=request.POST.get("comment", ""),
                via_link=True,
            )
        except ApplicationError as exc:
            context["error"] = exc.message
            return render(request, "tickets/context/feedback.html", context, status=400)
        context["thanks"] = True
    return render(request, "tickets/context/feedback.html", context)
