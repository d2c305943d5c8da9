"""The customer directory (``/customers/``, ``selectors.customer_directory_page``): the
customers the viewer may see, searched by name, address, phone number however typed, or
the caller's own id; ticket counts of the tickets the viewer sees; erased customers left
out (docs/workbench.md)."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tickets import selectors, services
from tickets.context.privacy import customer_erase
from tickets.models import Customer, Team

pytestmark = pytest.mark.django_db


def _web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _listed(user: Any, query: str = "") -> list[str]:
    response = _web(user).get(f"/customers/{query}")
    assert response.status_code == 200, response.content[:300]
    page = BeautifulSoup(response.content, "html.parser")
    return [a.get_text() for a in page.select("table.customers td.col-main a.subject")]


@pytest.fixture
def world(teams: tuple[Team, Team]) -> dict[str, Customer]:
    billing, shipping = teams
    ours = Customer.objects.create(
        name="Ada Ours", email="ada@example.com", phone="+44 20 7946 0001"
    )
    theirs = Customer.objects.create(name="Quentin Theirs", email="q@example.com")
    both = Customer.objects.create(name="Bo Both", email="bo@example.com", external_id="CUST-42")
    lonely = Customer.objects.create(name="Lonely NoTickets", email="lonely@example.com")
    services.ticket_create(customer=ours, subject="Ours", body="x", team=billing)
    closed = services.ticket_create(customer=ours, subject="Old", body="x", team=billing)
    closed.status = "closed"
    closed.save(update_fields=["status"])
    services.ticket_create(customer=theirs, subject="Theirs", body="x", team=shipping)
    services.ticket_create(customer=both, subject="Mine", body="x", team=billing)
    services.ticket_create(customer=both, subject="Not mine", body="x", team=shipping)
    return {"ours": ours, "theirs": theirs, "both": both, "lonely": lonely}


def test_an_agent_lists_the_customers_of_its_teams_tickets(agent, world):
    assert _listed(agent) == ["Bo Both", "Ada Ours"]  # newest first


def test_a_supervisor_lists_every_customer(supervisor, world):
    assert _listed(supervisor) == ["Lonely NoTickets", "Bo Both", "Quentin Theirs", "Ada Ours"]


def test_counts_are_of_the_tickets_the_viewer_sees(agent, supervisor, world):
    mine: dict[str, Any] = {
        c.name: c for c in selectors.customer_directory_page(user=agent).customers
    }
    assert (mine["Ada Ours"].tickets_open, mine["Ada Ours"].tickets_total) == (1, 2)
    assert (mine["Bo Both"].tickets_open, mine["Bo Both"].tickets_total) == (1, 1)
    every: dict[str, Any] = {
        c.name: c for c in selectors.customer_directory_page(user=supervisor).customers
    }
    assert every["Bo Both"].tickets_total == 2
    assert (every["Lonely NoTickets"].tickets_total, every["Lonely NoTickets"].last_ticket_at) == (
        0,
        None,
    )


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?q=ada", ["Ada Ours"]),  # part of the name, any case
        ("?q=BO%40EXAMPLE", ["Bo Both"]),  # part of the address
        ("?q=%2B442079460001", ["Ada Ours"]),  # the number as calls keep it
        ("?q=020+7946-0001", []),  # a national number is another number
        ("?q=7946+0001", ["Ada Ours"]),  # digits typed with spaces
        ("?q=CUST-42", ["Bo Both"]),  # the caller's own customer id
        ("?q=cust-42", []),  # exact
        ("?q=Quentin", []),  # another team's customer is not found by an agent
        ("?q=zzz", []),
    ],
)
def test_search(agent, world, query, names):
    assert _listed(agent, query) == names


def test_erased_customers_are_left_out(supervisor, world):
    customer_erase(customer=world["ours"], actor=supervisor, via="test")
    assert "Ada Ours" not in _listed(supervisor)
    assert len(_listed(supervisor)) == 3


def test_bad_input_is_the_page_again_with_the_reason(agent, world):
    long = _web(agent).get("/customers/?q=" + "x" * 201)
    assert long.status_code == 400
    assert "q: at most 200 characters." in long.content.decode()
    page = _web(agent).get("/customers/?page=abc")
    assert page.status_code == 400
    assert "page must be a whole number" in page.content.decode()
    assert _web(agent).get("/customers/?page=5").status_code == 200  # past the end: empty


def test_pages_and_a_constant_number_of_queries(agent, teams):
    billing, _ = teams
    for n in range(7):
        customer = Customer.objects.create(name=f"Customer {n}", email=f"c{n}@example.com")
        services.ticket_create(customer=customer, subject="x", body="x", team=billing)
    first = selectors.customer_directory_page(user=agent, page_size=5)
    second = selectors.customer_directory_page(user=agent, page=2, page_size=5)
    assert (len(first.customers), first.has_next) == (5, True)
    assert ([c.name for c in second.customers], second.has_next) == (
        ["Customer 1", "Customer 0"],
        False,
    )
    client = _web(agent)
    client.get("/customers/")  # sessions, the user's teams
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/customers/").status_code == 200
    few = len(queries)
    for n in range(7, 20):
        customer = Customer.objects.create(name=f"Customer {n}", email=f"c{n}@example.com")
        services.ticket_create(customer=customer, subject="x", body="x", team=billing)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/customers/").status_code == 200
    assert len(queries) == few


def test_the_navigation_links_to_it(agent, world):
    page = BeautifulSoup(_web(agent).get("/").content, "html.parser")
    link = page.select_one('nav[aria-label="Main"] a[href="/customers/"]')
    assert link is not None
    assert link.get_text() == "Customers"
