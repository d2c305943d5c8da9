"""Connects the customer context to the core: event subscribers, the ticket-page panel and
the ticket-create response extra. Called from ``TicketsConfig.ready()``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from support.events import subscribe, subscribe_batch, subscriber_task_enqueue
from support.models import OutboxEvent
from tickets.models import Customer, Ticket, TicketStatus

REOPENED_FROM = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})


def on_messages_created(events: list[OutboxEvent]) -> None:
    """One task per relay batch for the customers' messages (a publish per message cost
    the relay more than the rest of its work)."""
    from tickets.context.tasks import interaction_record_for_messages_task

    ids = [
        int(event.payload["message_id"])
        for event in events
        if event.payload.get("direction") == "inbound"
        and event.payload.get("kind", "public") == "public"
    ]
    if ids:
        subscriber_task_enqueue(interaction_record_for_messages_task, ids)


def on_ticket_changed(event: OutboxEvent) -> None:
    """Open-ticket counts change the context; reopenings are logged as interactions."""
    from tickets.context.cache import context_invalidate
    from tickets.context.tasks import interaction_record_reopen_task

    payload = event.payload
    changes = payload.get("changes") or {}
    # A ticket moved between customers (a customer merge whose source is kept, e.g. an
    # erased one) changes both contexts: the payload names only the new customer.
    moved = changes.get("customer_id")
    customer_ids = {payload.get("customer_id"), *(moved if isinstance(moved, list) else ())}
    for customer_id in sorted(int(c) for c in customer_ids if c is not None):
        context_invalidate(customer_id)
    status_change = changes.get("status")
    if (
        event.event_type == "ticket.updated"
        and isinstance(status_change, list)
        and len(status_change) == 2
        and status_change[0] in REOPENED_FROM
        and status_change[1] == TicketStatus.OPEN
    ):
        subscriber_task_enqueue(
            interaction_record_reopen_task,
            event.pk,
            int(payload["ticket_id"]),
            event.created_at.isoformat(),
        )


def on_csat_submitted(event: OutboxEvent) -> None:
    """The answer's interaction, with its sentiment, is written in a task (events written
    before ``submitted_at`` was added had their interaction written with the answer)."""
    from tickets.context.tasks import interaction_record_for_csat_task

    submitted_at = event.payload.get("submitted_at")
    if submitted_at:
        subscriber_task_enqueue(
            interaction_record_for_csat_task, int(event.payload["ticket_id"]), submitted_at
        )


#: The customer-context panel's template: the ticket page's sidebar and the customer page.
PANEL_TEMPLATE = "tickets/context/panel.html"


def customer_panel_context(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    """The panel's variables for ``customer`` as the signed-in user may see it; the caller
    has checked the customer is visible (a visible ticket of theirs, or
    ``tickets.selectors.customer_get_visible`` on the customer page)."""
    from tickets.context.selectors import customer_context_for

    return {"context": customer_context_for(customer, user=request.user)}


def panel_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    return customer_panel_context(request, ticket.customer)


def create_extra_context(request: Any, ticket: Ticket) -> dict[str, Any] | None:
    """Built fresh: the ``ticket.created`` invalidation arrives only after the relay runs.

    Filtered to what the caller may see, like the other context endpoints; ``None`` when
    the caller may not see the customer at all (e.g. the new ticket went to another team
    and none of the customer's tickets is the caller's to see)."""
    from tickets.context.cache import context_invalidate
    from tickets.context.selectors import customer_context_for
    from tickets.selectors import customer_visible_to, ticket_visible_to

    user = request.user
    if not ticket_visible_to(
        user, team_id=ticket.team_id, assignee_id=ticket.assignee_id
    ) and not customer_visible_to(user, customer_id=ticket.customer_id):
        return None
    context_invalidate(ticket.customer_id)
    return customer_context_for(ticket.customer, user=user)


def connect() -> None:
    from support.metrics import metric_source_register
    from tickets import extras
    from tickets.context import tasks  # noqa: F401 - registers the Celery tasks
    from tickets.context.metrics import context_metrics
    from tickets.panels import Panel, register_panel

    subscribe_batch("message.created", on_messages_created)
    subscribe("ticket.created", on_ticket_changed)
    subscribe("ticket.updated", on_ticket_changed)
    subscribe("csat.submitted", on_csat_submitted)
    register_panel(
        Panel(
            name="customer_context",
            title="Customer context",
            template=PANEL_TEMPLATE,
            context=panel_context,
            order=20,
            slot="sidebar",
        )
    )
    extras.register_create_extra("context", create_extra_context)
    metric_source_register("context", context_metrics)  # GET /metrics
