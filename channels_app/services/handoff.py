"""Chatbot hand-off: a bot session becomes a ticket."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from channels_app.services.matching import _advisory_lock
from tickets import services as ticket_services
from tickets.models import (
    Direction,
    MessageKind,
    Ticket,
)

logger = logging.getLogger(__name__)


# --- chatbot hand-off -------------------------------------------------------------------


@transaction.atomic
def chatbot_handoff(
    *,
    source: str,
    customer_email: str,
    subject: str,
    initial_message: str,
    session_id: str,
    transcript: list[dict[str, Any]] | None = None,
    customer_name: str = "",
) -> tuple[Ticket, bool]:
    """Open (once per bot session) a ticket flagged ``is_bot_handoff``."""
    _advisory_lock(f"chatbot:{session_id}")
    existing = Ticket.objects.filter(channel="chatbot", origin_platform_id=session_id).first()
    if existing is not None:
        return existing, False
    customer, _ = ticket_services.customer_get_or_create(email=customer_email, name=customer_name)
    metadata: dict[str, Any] = {"bot_source": source, "bot_session_id": session_id}
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject=subject,
        body=initial_message,
        channel="chatbot",
        is_bot_handoff=True,
        origin_platform_id=session_id,
        message_metadata=metadata,
    )
    if transcript:
        lines = [
            f"{turn.get('role', '?')!s}: {turn.get('text', turn.get('content', ''))!s}"
            for turn in transcript
        ]
        ticket_services.message_add(
            ticket=ticket,
            body="Bot transcript\n" + "\n".join(lines),
            kind=MessageKind.INTERNAL_NOTE,
            direction=Direction.OUTBOUND,
            metadata={"bot_transcript": transcript},
        )
    return ticket, True
