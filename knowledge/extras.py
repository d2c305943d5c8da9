"""The ``suggestions`` extra of the ticket-create response
(``POST /api/tickets?include=suggestions``), registered in ``KnowledgeConfig.ready()``."""

from __future__ import annotations

import logging
from typing import Any

from knowledge.selectors import ticket_suggestions
from support.errors import ApplicationError

logger = logging.getLogger(__name__)

CREATE_SUGGESTIONS_K = 3


def create_extra_suggestions(request: Any, ticket: Any) -> list[dict[str, Any]] | None:
    """The new ticket's suggested passages, like ``GET /api/tickets/{id}/suggestions``.

    ``None`` when the caller may not see the new ticket (it went to another team), the
    answer that endpoint would give as a 404; ``[]`` when the backend is down (a KB outage
    must not fail the ticket that was just created: it is logged)."""
    from tickets.selectors import ticket_visible_to

    if not ticket_visible_to(request.user, team_id=ticket.team_id, assignee_id=ticket.assignee_id):
        return None
    try:
        results = ticket_suggestions(ticket, k=CREATE_SUGGESTIONS_K)
    except ApplicationError:
        logger.warning("kb suggestions unavailable for new ticket %s", ticket.pk, exc_info=True)
        return []
    return [r.as_dict() for r in results]
