from __future__ import annotations

import uuid

import pytest

from routing.models import RoutingDecision
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db


def test_decision_changelist_links_the_ticket(admin_client, customer):
    ticket = ticket_create(customer=customer, subject="Route me", body="?")
    RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.5,
        provider="local",
        correlation_id=uuid.uuid4(),
    )
    response = admin_client.get("/admin/routing/routingdecision/")
    assert response.status_code == 200
    assert f'/admin/tickets/ticket/{ticket.pk}/change/">T-{ticket.pk:06d}</a>' in (
        response.content.decode()
    )
