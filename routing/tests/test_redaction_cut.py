"""The text routing reads is cut to ``ROUTED_TEXT_MAX_CHARS`` without cutting a personal
detail in two: the routing agent's prompt held ``…never arr zq1815.home@e`` (the remains
of an address the redaction no longer recognised)."""

from __future__ import annotations

import contextlib
import json

import pytest

from routing.classifier import ROUTED_TEXT_MAX_CHARS, routed_text
from routing.context import ticket_text
from routing.providers.agent import AgentProvider
from routing.tests.conftest import ScriptedModel, ticket_context
from routing.tools import CustomerInfo
from tickets.context.privacy import customer_redaction_names

DECISION = {
    "team": "orders",
    "priority": "normal",
    "confidence": 0.9,
    "category": "ORDER",
    "intent": "cancel_order",
    "secondary": [],
    "reasoning": "x",
    "requires_manual_review": False,
}
EMAIL = "zq1815.home@example.com"
FILLER = "My parcel never arrived please help. " * 200


@pytest.mark.django_db
def test_the_routing_prompt_holds_no_part_of_a_detail_at_the_cut():
    from tickets import services as ts
    from tickets.models import Customer

    customer = Customer.objects.create(name="Sean O'Brien", email=EMAIL)
    body = FILLER[: ROUTED_TEXT_MAX_CHARS - len("Refund. ") - 2 - 12] + " " + EMAIL + " thanks"
    ticket = ts.ticket_create(customer=customer, subject="Refund", body=body)
    text = ticket_text(ticket)
    # everything before the address, none of it (before: "… never arr zq1815.home@e")
    assert text == f"Refund. {body[: body.index(EMAIL)]}".rstrip()
    ctx = ticket_context(
        None,
        text,
        ticket_id=ticket.pk,
        number=ticket.number,
        customer=CustomerInfo(customer.pk, "none", "individual"),
        redact_names=customer_redaction_names(customer.pk),
    )
    model = ScriptedModel([("tool", "RoutingDecisionOutput", DECISION)])
    with contextlib.suppress(Exception):  # only the request sent matters here
        AgentProvider(model_factory=lambda: model)._once(ctx)
    sent = json.dumps([call["messages"] for call in model.calls], ensure_ascii=False)
    assert "zq1815" not in sent
    assert "never arrived please help" in sent


def test_routed_text_of_normal_texts_is_unchanged():
    """What the classifier reads of an ordinary text (shorter than the limit) is the text."""
    text = "I want to cancel order 12345, it has not shipped yet"
    assert routed_text(text) == text
    long = "cancel my order " * 400
    assert len(routed_text(long)) <= ROUTED_TEXT_MAX_CHARS
    assert long.startswith(routed_text(long))
    assert routed_text(long).endswith("order")
