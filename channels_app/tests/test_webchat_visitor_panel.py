"""The ticket page's "Web chat visitor" panel shows a visitor's email verification only on
a ticket that visitor's chat opened (audit: an API caller could name any visitor)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from channels_app.models import WebchatVerification
from channels_app.tests.conftest import make_account
from tickets import services as ticket_services
from tickets.models import Customer, Ticket

pytestmark = pytest.mark.django_db

VISITOR = "v_known"
ADDRESS = "private.address@example.com"


def _page(user: Any, ticket: Ticket) -> str:
    browser = Client()
    browser.force_login(user)
    response = browser.get(f"/tickets/{ticket.number}/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def verified_visitor() -> WebchatVerification:
    """A web chat visitor of the "main" widget who proved an address."""
    now = timezone.now()
    return WebchatVerification.objects.create(
        account=make_account("webchat"),
        visitor_id=VISITOR,
        email=ADDRESS,
        code_salt="s",
        expires_at=now + timedelta(minutes=10),
        verified_at=now,
    )


def test_a_ticket_naming_a_visitor_through_the_api_shows_no_verification(
    agent: Any, agent_client: Any, verified_visitor: WebchatVerification
) -> None:
    body = {
        "subject": "Hello",
        "description": "Hi",
        "channel": "webchat",
        "origin_platform_id": VISITOR,
        "customer": {"email": "mallory@example.com", "name": "Mallory"},
    }
    response = agent_client.post("/api/tickets", body, format="json")
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get(pk=response.json()["id"])
    assert (ticket.channel, ticket.origin_platform_id, ticket.channel_account_id) == (
        "webchat",
        VISITOR,
        "",
    )
    page = _page(agent, ticket)
    assert ADDRESS not in page
    assert VISITOR not in page  # no visitor panel at all


def test_the_verification_is_the_visitors_on_the_ticket_s_own_widget(
    agent: Any, verified_visitor: WebchatVerification
) -> None:
    """The same visitor id on another widget is another visitor."""
    customer = Customer.objects.create(name="Guest", email="")
    tickets = {
        name: ticket_services.ticket_create(
            customer=customer,
            subject=name,
            body="Hi",
            channel="webchat",
            channel_account_id=str(account.pk),
            origin_platform_id=VISITOR,
        )
        for name, account in (
            ("own widget", verified_visitor.account),
            ("other widget", make_account("webchat", name="other")),
        )
    }
    own = _page(agent, tickets["own widget"])
    assert ADDRESS in own
    assert "verified" in own
    other = _page(agent, tickets["other widget"])
    assert VISITOR in other  # the panel is there: this visitor asked for no code
    assert ADDRESS not in other
    assert "None requested" in other
