"""OpenAPI pieces shared by every API that takes a ticket in its path (tickets, context,
routing, knowledge)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from support.api_schema import path_parameter

# ``123`` or ``T-000123`` (see tickets.selectors.parse_ticket_ref).
TICKET_REF_PATTERN = r"^(?:[Tt]-)?[0-9]{1,18}$"

TICKET_ID = path_parameter(
    "ticket_id",
    description="The ticket: its id (`42`) or its number (`T-000042`).",
    pattern=TICKET_REF_PATTERN,
    examples={"id": "1", "number": "T-000001"},
)


class StatusGrantScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """``GET /api/tickets/{id}/status``'s other credential: the chatbot hand-off signature
    (``tickets.status_access``; docs/channels.md#chatbot-hand-off)."""

    target_class = "tickets.api.views.StatusGrantAuthentication"
    name = "ChatbotSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature-256",
            "description": "sha256=<hex HMAC-SHA256(chatbot secret, "
            '"<X-Signature-Timestamp>.GET <path>")>, with X-Signature-Timestamp.',
        }
