"""The ticket-page panel: knowledge-base suggestions with one-click insert.

Convention shared with the workbench (documented in docs/knowledge.md): any element with
``data-insert-text`` inserts that text into the reply composer (``[data-reply-composer]``,
else the page's first ``textarea[name=body]``) when clicked. The panel ships a small script
(``static/knowledge/suggestions.js``, no inline script: the workbench's Content-Security-Policy
forbids them) that does this itself, so it works whether or not the workbench wires the
attribute.

Passages and titles come from documents anyone with a KB source can write: the snippet is
escaped HTML built in Python (``SearchResult.snippet_html``) and the document link is shown
only for an http(s) URL.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from knowledge.selectors import ticket_suggestions
from support.errors import ApplicationError
from support.safe_urls import http_url

logger = logging.getLogger(__name__)


def insert_text(title: str, text: str, url: str) -> str:
    """The reply text one click inserts: the passage, then its link."""
    link = f"\n{title}: {url}" if url else ""
    return f"{text.strip()}{link}"


def suggestions_panel_context(request: HttpRequest, ticket: Any) -> dict[str, Any] | None:
    try:
        results = ticket_suggestions(ticket, k=3)
    except ApplicationError:  # a Bedrock outage must not break the ticket page
        logger.warning("kb suggestions unavailable for ticket %s", ticket.pk, exc_info=True)
        return {"suggestions": [], "unavailable": True, "ticket": ticket}
    return {
        "ticket": ticket,
        "unavailable": False,
        "suggestions": [
            {
                **r.as_dict(),
                "url": http_url(r.url),
                "snippet_html": r.snippet_html,
                "insert_text": insert_text(r.title, r.answer_text, http_url(r.url)),
            }
            for r in results
        ],
    }


def draft_panel_context(request: HttpRequest, ticket: Any) -> dict[str, Any] | None:
    """The "Draft a reply" button: nothing is retrieved or composed until it is clicked."""
    return {"ticket": ticket, "channel": ticket.get_channel_display()}
