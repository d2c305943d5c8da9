"""OpenAPI pieces shared by every API that takes a ticket in its path (tickets, context,
routing, knowledge)."""

from __future__ import annotations

from support.api_schema import path_parameter

# ``123`` or ``T-000123`` (see tickets.selectors.parse_ticket_ref).
TICKET_REF_PATTERN = r"^(?:[Tt]-)?[0-9]{1,18}$"

TICKET_ID = path_parameter(
    "ticket_id",
    description="The ticket: its id (`42`) or its number (`T-000042`).",
    pattern=TICKET_REF_PATTERN,
    examples={"id": "1", "number": "T-000001"},
)
