"""Where people land after signing in."""

from __future__ import annotations

import pytest

from tickets.models import Customer, Ticket

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


def _sign_in(client, username, next_url=None):
    data = {"username": username, "password": PASSWORD}
    url = "/accounts/login/" + (f"?next={next_url}" if next_url else "")
    if next_url:
        data["next"] = next_url
    response = client.post(url, data)
    assert response.status_code == 302
    return client.get(response["Location"])


def test_supervisor_lands_on_the_dashboard(client, supervisor):
    response = _sign_in(client, "supervisor", "/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_agent_with_nothing_assigned_lands_on_unassigned(client, agent):
    response = _sign_in(client, "agent")
    assert response["Location"] == "/?view=unassigned"


def test_agent_with_work_lands_on_mine(client, agent):
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    Ticket.objects.create(customer=customer, subject="s", assignee=agent, status="open")
    response = _sign_in(client, "agent", "/")
    assert response["Location"] == "/?view=mine"


def test_explicit_urls_still_work(client, supervisor):
    response = client.post(
        "/accounts/login/?next=/?view=all",
        {"username": "supervisor", "password": PASSWORD, "next": "/?view=all"},
    )
    assert response["Location"] == "/?view=all"
    assert client.get("/").status_code == 200  # "/" stays the inbox
