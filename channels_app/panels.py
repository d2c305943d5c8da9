"""The ticket page's "Channel deliveries" panel: every reply's fate, visible to agents."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from channels_app.models import OutboundDelivery
from support.auth.roles import is_supervisor
from tickets.models import Ticket


def deliveries_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    deliveries = list(
        OutboundDelivery.objects.filter(message__ticket=ticket)
        .select_related("message")
        .order_by("-created_at")[:20]
    )
    if not deliveries:
        return None
    return {
        "deliveries": deliveries,
        "can_redrive": is_supervisor(request.user),
    }
