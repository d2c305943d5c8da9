"""The ticket page's channel panels: "Channel deliveries" (every reply's fate) and "Web
chat visitor" (what a visitor typed, marked unverified, and its email verification)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from channels_app.models import WebchatVerification
from channels_app.services import CHANNEL_REPLY_KIND
from channels_app.verification import webchat_verification_delivery
from support.auth.roles import is_supervisor
from support.delivery.selectors import deliveries_for_subject
from support.parsing import parse_id
from tickets.models import Channel, Direction, Message, Ticket


def deliveries_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    deliveries = list(
        deliveries_for_subject(
            subject_type="ticket", subject_ids=[ticket.pk], target_kind=CHANNEL_REPLY_KIND
        ).order_by("-created_at")[:20]
    )
    if not deliveries:
        return None
    messages = Message.objects.in_bulk([d.payload.get("message_id") for d in deliveries])
    labels = dict(Channel.choices)
    return {
        "deliveries": [
            {
                "delivery": delivery,
                "message": messages.get(delivery.payload.get("message_id")),
                "channel": labels.get(delivery.payload.get("channel", ""), ""),
                "admin_url": reverse("admin:delivery_delivery_change", args=[delivery.pk]),
            }
            for delivery in deliveries
        ],
        "can_redrive": is_supervisor(request.user),
    }


def webchat_visitor_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    """A web chat ticket's visitor: what it typed (unverified) and its verification.

    Only for a ticket the widget opened: one with the web chat account it came through
    (``channel_account_id``, set by intake, never by the API). Its ``origin_platform_id``
    alone proves nothing: an API caller may create a "webchat" ticket naming any visitor
    id, and the page showed that visitor's verification (the address it typed, verified
    or not). The verification is looked up on that account too."""
    if ticket.channel != "webchat" or not ticket.origin_platform_id:
        return None
    account_id = parse_id(ticket.channel_account_id)
    if account_id is None:
        return None
    claimed = (
        Message.objects.filter(ticket=ticket, direction=Direction.INBOUND, channel="webchat")
        .filter(metadata__has_key="claimed_email")
        .order_by("-created_at")
        .values_list("metadata__claimed_email", flat=True)
        .first()
    )
    latest = (
        WebchatVerification.objects.filter(
            account_id=account_id, visitor_id=ticket.origin_platform_id
        )
        .order_by("-created_at")
        .first()
    )
    delivery = webchat_verification_delivery(latest) if latest is not None else None
    return {
        "visitor_id": ticket.origin_platform_id,
        "claimed_email": claimed or "",
        "verification": latest,
        "verification_status": delivery.get_status_display() if delivery else "not sent",
        "verification_expired": latest is not None
        and latest.verified_at is None
        and latest.expires_at <= timezone.now(),
    }
