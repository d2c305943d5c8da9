from __future__ import annotations

from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.utils import timezone

from tickets import services as core
from tickets.context import services
from tickets.context.services import OrderInput
from tickets.panels import panels_for

pytestmark = pytest.mark.django_db


def test_customer_context_panel_is_registered_and_renders(customer, agent):
    [panel] = [p for p in panels_for("sidebar") if p.name == "customer_context"]
    services.order_upsert(
        customer=customer,
        data=OrderInput(
            number="ORD-55", status="failed", total=Decimal("12.00"), placed_at=timezone.now()
        ),
    )
    ticket = core.ticket_create(customer=customer, subject="Payment failed")
    services.interaction_record(
        customer_id=customer.pk,
        source_key="chat-1",
        channel="webchat",
        kind="message",
        occurred_at=timezone.now(),
        summary="Where is my refund",
    )
    request = RequestFactory().get("/")
    request.user = agent
    html = render_to_string(panel.template, panel.context(request, ticket), request=request)
    assert "Ada Lovelace" in html
    # contact details are the Customer card's (the ticket page shows them once)
    assert "ada@example.com" not in html
    assert "<dt>Tickets</dt><dd>1 open / 1</dd>" in html
    assert "ORD-55" in html
    # stored values as people read them ("failed", "webchat · message" before)
    assert '<span class="badge order-failed">Failed</span>' in html
    assert " · Web chat · Customer message</small>" in html
    # rule points, never checked against who actually left: said so, not a prediction
    assert "Churn risk (rules): low" in html
    assert "rule points, not a trained prediction" in html
    assert "1 failed or cancelled order in 90 days." in html
    assert html.count('class="bar empty"') == 12
