"""The ticket page's channel panels: "Channel deliveries" (every reply's fate) and "Web
chat visitor" (what a visitor typed, marked unverified, and its email verification)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from channels_app.models import OutboundDelivery, WebchatVerification
from support.auth.roles import is_supervisor
from tickets.models import Direction, Message, Ticket


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


def webchat_visitor_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    """A web chat ticket's visitor: what it typed (unverified) and its verification."""
    if ticket.channel != "webchat" or not ticket.origin_platform_id:
        return None
    claimed = (
        Message.objects.filter(ticket=ticket, direction=Direction.INBOUND, channel="webchat")
        .filter(metadata__has_key="claimed_email")
        .order_by("-created_at")
        .values_list("metadata__claimed_email", flat=True)
        .first()
    )
    latest = (
        WebchatVerification.objects.filter(visitor_id=ticket.origin_platform_id)
        .order_by("-created_at")
        .first()
    )
    return {
        "visitor_id": ticket.origin_platform_id,
        "claimed_email": claimed or "",
        "verification": latest,
        "verification_expired": latest is not None
        and latest.verified_at is None
        and latest.expires_at <= timezone.now(),
    }
