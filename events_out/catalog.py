"""Which domain events leave the product, and under which names.

Internal events (``agent.access_changed``, ``call.alert``, ``call.alert_acknowledged``,
``call.agent_state``, web chat pushes) stay on the websocket layer: they describe agents
and live sessions, not tickets.
"""

from __future__ import annotations

#: Event type → EventBridge ``detail-type`` (seed 004 names the first ``TicketReceived``).
DETAIL_TYPES: dict[str, str] = {
    "ticket.created": "TicketReceived",
    "ticket.updated": "TicketUpdated",
    "ticket.resolved": "TicketResolved",
    "message.created": "MessageCreated",
    "message.delivery_updated": "MessageDeliveryUpdated",
    "routing.decided": "RoutingDecided",
    "call.escalated": "CallEscalated",
    "call.analysed": "CallAnalysed",
}

EXPORTED_EVENT_TYPES: tuple[str, ...] = tuple(DETAIL_TYPES)

#: Seed 001's Kafka topics: ticket lifecycle events and message events.
KAFKA_TICKET_PREFIX = "ticket."
KAFKA_MESSAGE_PREFIX = "message."


def is_exported(event_type: str) -> bool:
    return event_type in DETAIL_TYPES


def event_type_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({detail})") for name, detail in DETAIL_TYPES.items()]
