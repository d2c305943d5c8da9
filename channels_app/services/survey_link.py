"""The satisfaction survey's link is put in its text only when the text is sent.

The signed feedback link answers as the customer (``tickets.context``): whoever holds it
may rate the ticket as them. So the survey message stores a placeholder
(``SURVEY_LINK_PLACEHOLDER``) and the link is built fresh from the ticket when the request
to the channel is built (``channels_app.services.outbound``), each attempt, retries
included; agents read the placeholder on the timeline and in the API. Its own module so
that the outbound path and the survey service (which imports the outbound path) both use
it.
"""

from __future__ import annotations

from tickets.context.services import feedback_link_build
from tickets.models import Message, Ticket

#: ``Message.metadata`` key of a survey message: ``"<ticket id>:<resolved_at ISO>"``, the
#: resolution it asks about (the idempotency key). It also tells the outbound path to put
#: the link in.
SURVEY_METADATA_KEY = "csat_survey"
#: What a survey message stores where the link goes (what agents see).
SURVEY_LINK_PLACEHOLDER = "[satisfaction survey link]"


def survey_text_with_link(message: Message, *, ticket: Ticket) -> str:
    """The text to send for ``message``: its own, with the feedback link of ``ticket``
    (the ticket it was written on) in place of the placeholder when it is a survey."""
    text = message.body_text
    if SURVEY_METADATA_KEY not in (message.metadata or {}):
        return text
    return text.replace(SURVEY_LINK_PLACEHOLDER, feedback_link_build(ticket))
