"""Every write to tickets goes through these functions; each records its domain events
in the same transaction (see ``support.events``).

One module per concern; this package re-exports the public names (``tickets.services.X``
and ``from tickets import services as ticket_services`` keep working). Patch a name in a
test where it is defined and looked up, not here.

- ``events``: ``ticket.*`` / ``message.*`` payloads and their outbox rows.
- ``customers``: customers and channel identities (find or create, merge, confirm).
- ``lifecycle``: opening tickets, changing fields and status, assigning, system entries.
- ``messages``: the timeline (messages, attachments, delivery status).
- ``merge``: merging tickets.
- ``opening``: opening a ticket on a signed-in person's behalf (API, workbench).
- ``canned``: canned responses.

The threading rules and the search vector are ``tickets.thread_rules``.
"""

from __future__ import annotations

from tickets.services.canned import canned_response_render
from tickets.services.customers import (
    channel_identity_link,
    channel_identity_move,
    customer_contact_update,
    customer_email_confirm,
    customer_external_id_problem,
    customer_find_by_email,
    customer_get_or_create,
    customer_get_or_create_by_external_id,
    customer_id_is_external,
    customer_merge,
)
from tickets.services.events import (
    PREVIEW_CHARS,
    message_new_event,
    message_ticket_fields,
    ticket_event_payload,
    ticket_new_event,
)
from tickets.services.lifecycle import (
    NO_TEAM_REFUSAL,
    NewAttachment,
    TicketAlreadySubmitted,
    assignee_refusal,
    assignment_allowed,
    inbound_message_build,
    tag_names_normalise,
    team_change_allowed,
    ticket_allowed_statuses,
    ticket_assign,
    ticket_build,
    ticket_create,
    ticket_mark_read,
    ticket_update,
)
from tickets.services.merge import ticket_merge
from tickets.services.messages import (
    MESSAGE_FILES_MAX_COUNT,
    attachment_content_store,
    attachment_download_fail,
    message_add,
    message_delivery_update,
    message_files_max_bytes,
    message_files_read,
    message_upload_length_check,
)
from tickets.services.opening import team_or_error, ticket_open
from tickets.thread_rules import TicketSearchVector, customer_search_text

__all__ = [
    "MESSAGE_FILES_MAX_COUNT",
    "NO_TEAM_REFUSAL",
    "PREVIEW_CHARS",
    "NewAttachment",
    "TicketAlreadySubmitted",
    "TicketSearchVector",
    "assignee_refusal",
    "assignment_allowed",
    "attachment_content_store",
    "attachment_download_fail",
    "canned_response_render",
    "channel_identity_link",
    "channel_identity_move",
    "customer_contact_update",
    "customer_email_confirm",
    "customer_external_id_problem",
    "customer_find_by_email",
    "customer_get_or_create",
    "customer_get_or_create_by_external_id",
    "customer_id_is_external",
    "customer_merge",
    "customer_search_text",
    "inbound_message_build",
    "message_add",
    "message_delivery_update",
    "message_files_max_bytes",
    "message_files_read",
    "message_new_event",
    "message_ticket_fields",
    "message_upload_length_check",
    "tag_names_normalise",
    "team_change_allowed",
    "team_or_error",
    "ticket_allowed_statuses",
    "ticket_assign",
    "ticket_build",
    "ticket_create",
    "ticket_event_payload",
    "ticket_mark_read",
    "ticket_merge",
    "ticket_new_event",
    "ticket_open",
    "ticket_update",
]
