"""Other credentials for ``GET /api/tickets/{id}/status`` besides an agent's.

A chatbot that handed a conversation to people holds no agent credential, only its own
signing secret; the channels app registers (in its ``AppConfig.ready()``) a function that
reads such a credential. The core names the slot, not the chatbot code behind it.

A registered function gets the request and the ticket reference from the URL and returns
``None`` when its credential is absent (the usual authentication then applies), the ticket
(or a :class:`StatusGrant` for it, to say more: how its holder fetches a reply's files)
when the credential is valid for it, or raises (``rest_framework.exceptions``
``AuthenticationFailed`` / ``PermissionDenied``, ``support.errors.NotFound``) when a
credential is present but wrong or names a ticket it may not see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tickets.models import Message, Ticket

_accessors: list[StatusAccess] = []


@dataclass(frozen=True)
class StatusGrant:
    """``request.auth`` of a status poll authenticated by a registered credential."""

    ticket: Ticket
    via: str
    #: The files of an agent's reply as the credential's holder fetches them (each a dict
    #: with at least ``id``, ``name``, ``content_type``, ``size`` and ``url``): listed as
    #: the poll's ``last_agent_reply.files``. None: the poll lists no files.
    reply_files: Callable[[Message], list[dict[str, Any]]] | None = None


StatusAccess = Callable[[Any, str], Ticket | StatusGrant | None]


def register_status_access(fn: StatusAccess) -> None:
    if fn not in _accessors:
        _accessors.append(fn)


def status_access_grant(request: Any, ticket_ref: str) -> StatusGrant | None:
    for fn in _accessors:
        found = fn(request, ticket_ref)
        if isinstance(found, StatusGrant):
            return found
        if found is not None:
            return StatusGrant(ticket=found, via=getattr(fn, "__name__", "registered"))
    return None
