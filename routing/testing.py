"""Helpers for the test suite (imported by tests only)."""

from __future__ import annotations

import uuid
from typing import Any

from routing.models import RoutingDecision
from tickets.models import Ticket


def routing_decision_create(ticket: Ticket, **fields: Any) -> RoutingDecision:
    """A stored routing decision for ``ticket``: its team (or ``team=``) and that team's
    slug, normal priority, confidence 0.9, the local provider, a new correlation id;
    ``fields`` set anything else (``category``, ``intent``, ``confidence``...)."""
    values: dict[str, Any] = {
        "team": ticket.team,
        "priority": "normal",
        "confidence": 0.9,
        "provider": "local",
        "correlation_id": uuid.uuid4(),
        **fields,
    }
    team = values["team"]
    values.setdefault("team_slug", team.slug if team is not None else "")
    return RoutingDecision.objects.create(ticket=ticket, **values)
