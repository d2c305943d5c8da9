"""Extras a ticket-create response can include (``POST /api/tickets?include=a,b``).

Apps register a named function in their ``AppConfig.ready()`` (the customer context
registers ``context``; the knowledge base registers ``suggestions``). The function gets
the request and the new ticket and returns JSON-ready data for the response key of the
same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.errors import InvalidInput
from tickets.models import Ticket

CreateExtra = Callable[[Any, Ticket], Any]

_extras: dict[str, CreateExtra] = {}


def register_create_extra(name: str, fn: CreateExtra) -> None:
    _extras[name] = fn


def available_create_extras() -> list[str]:
    return sorted(_extras)


def parse_include(raw: str | None) -> list[str]:
    """Names from ``include=a,b``; unknown names raise InvalidInput before anything is written."""
    names = [part.strip() for part in (raw or "").split(",") if part.strip()]
    unknown = [name for name in names if name not in _extras]
    if unknown:
        available = ", ".join(available_create_extras()) or "none"
        raise InvalidInput(
            f"include: {', '.join(unknown)} not available (available: {available}).",
            details={"include": [f"Unknown: {', '.join(unknown)}."]},
        )
    return list(dict.fromkeys(names))


def create_extras_build(names: list[str], request: Any, ticket: Ticket) -> dict[str, Any]:
    return {name: _extras[name](request, ticket) for name in names}
