"""The routing panel on the ticket page (registered in ``RoutingConfig.ready``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from routing import selectors
from routing.models import CUSTOMER_TEXT_ATTEMPT
from routing.providers.base import CONFIDENCE_NOT_MEASURED
from routing.reasons import review_reasons_words
from tickets.models import Priority, Team, Ticket
from tickets.panels import Panel, register_panel


def panel_context(request: HttpRequest, ticket: Ticket) -> dict[str, Any] | None:
    decision = selectors.routing_decision_latest(ticket=ticket)
    if decision is not None:
        selectors.routing_decisions_for_viewer([decision], user=request.user)
    return {
        "decision": decision,
        # as people read them (the data set's labels in words); as stored on hover
        "review_reasons": review_reasons_words(decision.review_reasons) if decision else [],
        # the decision's confidence is the classifier's calibrated one unless none was had
        "confidence_measured": decision is not None
        and CONFIDENCE_NOT_MEASURED not in decision.review_reasons,
        # made again on the customer's first message (the first decision had no words)
        "on_customer_text": decision is not None and decision.attempt_key == CUSTOMER_TEXT_ATTEMPT,
        "ticket": ticket,
        "teams": list(Team.objects.values_list("slug", "name")),
        "priorities": Priority.choices,  # (value, label): "High", not "high"
    }


def register() -> None:
    register_panel(
        Panel(
            name="routing",
            title="AI routing",
            template="routing/panel.html",
            context=panel_context,
            order=20,
            slot="routing",
        )
    )
