"""Canned responses filled for a ticket."""

from __future__ import annotations

import re
from typing import Any

from tickets.models import (
    CannedResponse,
    Ticket,
)

_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+(?:\.[a-z_]+)?)\s*}}")


def canned_response_render(*, canned: CannedResponse, ticket: Ticket, agent: Any) -> str:
    """Fill a canned response's placeholders for this ticket.

    Known: ``customer.name``, ``customer.first_name``, ``customer.email``,
    ``ticket.number``, ``ticket.subject``, ``agent.name``, ``agent.first_name``.
    Unknown placeholders are left as typed so the agent notices them.
    """
    customer = ticket.customer
    agent_name = (agent.get_full_name() or agent.get_username()) if agent else ""
    values = {
        "customer.name": customer.name or "there",
        "customer.first_name": (customer.name.split() or ["there"])[0],
        "customer.email": customer.email,
        "ticket.number": ticket.number,
        "ticket.subject": ticket.subject,
        "agent.name": agent_name,
        "agent.first_name": (getattr(agent, "first_name", "") or agent_name),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), canned.body)
