"""The public feedback page behind the signed link (no login: the token is the key). The
answer is the customer's only when nobody is signed in: an agent or supervisor signed in
answers as themselves."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from support.auth.roles import is_agent
from support.errors import ApplicationError, Conflict
from support.parsing import parse_id
from support.throttling import client_ip_from_meta, hit
from tickets import selectors as ticket_selectors
from tickets.context import services

TEMPLATE = "tickets/context/feedback.html"
SIGNED_IN_REFUSED = (
    "You are signed in without an agent's role: this link is the customer's. Sign out to "
    "answer through it."
)


def feedback_page(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "POST":
        # The API's per-IP limit (PerIPRateThrottle), in the same bucket: each answer writes
        # an interaction and an event and may call the sentiment service.
        limit = int(settings.API_ANON_RATE_LIMIT_PER_MINUTE)
        wait = hit(f"ip:{client_ip_from_meta(request.META)}", limit)
        if wait is not None:
            message = "Too many answers from this address; please try again in a minute."
            response = render(request, TEMPLATE, {"throttled": True, "error": message}, status=429)
            response["Retry-After"] = str(math.ceil(wait))
            return response
    # The link is the customer's: a signed-in agent or supervisor who opens it answers as
    # themselves (recorded_by), on a ticket they may see; anyone else signed in, not at all.
    user = request.user
    staff = is_agent(user)
    signed_in = bool(getattr(user, "is_authenticated", False))
    try:
        ticket_id = services.feedback_token_ticket_id(token)
        ticket = services.ticket_for_feedback(ticket_id=ticket_id)
        if staff:
            ticket_selectors.ticket_get_visible(ticket.pk, user=user)
    except Conflict as exc:  # a merged ticket: nothing to rate here (not a bad link)
        return render(request, TEMPLATE, {"merged": True, "error": exc.message}, status=409)
    except ApplicationError as exc:
        return render(request, TEMPLATE, {"error": exc.message}, status=403)
    context: dict[str, object] = {
        "ticket": ticket,
        "ratings": range(1, 6),
        "as_staff": staff,
        "signed_in_refused": signed_in and not staff,
    }
    if request.method == "POST":
        if signed_in and not staff:
            context["error"] = SIGNED_IN_REFUSED
            return render(request, TEMPLATE, context, status=403)
        raw = request.POST.get("rating", "")
        try:
            services.feedback_submit(
                ticket=ticket,
                rating=parse_id(raw) or 0,
                comment=request.POST.get("comment", ""),
                via_link=not staff,
                recorded_by=user if staff else None,
            )
        except ApplicationError as exc:
            # the page again, with what the customer chose and wrote (it came back empty)
            context.update(
                {"error": exc.message, "rating": raw, "comment": request.POST.get("comment", "")}
            )
            return render(request, TEMPLATE, context, status=400)
        context["thanks"] = True
    return render(request, TEMPLATE, context)
