"""The customer page (``/customers/<id>/``): the profile, the customer's tickets the viewer
may see (ticket by ticket, paged like the inbox) and the customer-context panel. A customer
the viewer may not see is "Not found", as an unknown id is (docs/workbench.md)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tickets import selectors, services
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def grace(teams: tuple[Team, Team]) -> Customer:
    customer = Customer.objects.create(
        name="Grace Hopper", email="grace@example.com", phone="+15550100"
    )
    services.channel_identity_link(
        customer=customer, channel="whatsapp", external_id="15550100", display_name="Grace H."
    )
    return customer


def _ticket(customer: Customer, subject: str, team: Team, *, days_ago: int = 0) -> Ticket:
    ticket = services.ticket_create(customer=customer, subject=subject, body="…", team=team)
    if days_ago:
        Ticket.objects.filter(pk=ticket.pk).update(
            created_at=timezone.now() - timedelta(days=days_ago)
        )
    return ticket


def _web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _url(customer: Customer | int) -> str:
    return f"/customers/{getattr(customer, 'pk', customer)}/"


def _soup(response: Any) -> Any:
    return BeautifulSoup(response.content, "html.parser")


def _one(node: Any, selector: str) -> Any:
    """The element ``selector`` finds under ``node`` (the test fails when there is none)."""
    found = node.select_one(selector)
    assert found is not None, selector
    return found


def _listed(response: Any) -> list[str]:
    """The ticket numbers the page lists, in order."""
    rows = _soup(response).select("table.customer-tickets tbody tr")
    return [_one(row, ".num").text for row in rows if row.select_one(".num")]


def test_an_agent_of_another_team_gets_not_found_as_for_an_unknown_id(grace, teams, other_agent):
    billing, _ = teams
    _ticket(grace, "Refund for order ORD-1", billing)
    client = _web(other_agent)
    hidden = client.get(_url(grace))
    unknown = client.get(_url(999999))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.templates[0].name == "tickets/not_found.html"
    assert hidden.context["message"] == f"No customer '{grace.pk}'."
    assert unknown.context["message"] == "No customer '999999'."
    html = hidden.content.decode()
    assert "Grace" not in html
    assert "grace@example.com" not in html
    assert "Refund for order" not in html
    assert client.get("/customers/abc/").status_code == 404


def test_an_agent_sees_only_the_tickets_it_may_see(grace, teams, agent, other_agent):
    billing, shipping = teams
    old = _ticket(grace, "Invoice missing", billing, days_ago=3)
    hidden = _ticket(grace, "Secret shipping matter", shipping, days_ago=2)
    assigned = _ticket(grace, "Parcel for me", shipping, days_ago=1)
    services.ticket_assign(ticket=assigned, assignee=agent)
    new = _ticket(grace, "Refund please", billing)
    response = _web(agent).get(_url(grace))
    assert response.status_code == 200
    # newest first; the Shipping ticket assigned to the agent is there, the other is not
    assert _listed(response) == [new.number, assigned.number, old.number]
    html = response.content.decode()
    assert hidden.number not in html
    assert "Secret shipping matter" not in html
    soup = BeautifulSoup(html, "html.parser")
    links = [a["href"] for a in soup.select("table.customer-tickets a.subject")]
    assert links == [f"/tickets/{t.number}/" for t in (new, assigned, old)]
    row = soup.select("table.customer-tickets tbody tr")[1]
    cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
    assert cells[1:5] == ["New", "Normal", "Shipping", "agent"]
    # and the Shipping agent sees Shipping's two alone
    assert _listed(_web(other_agent).get(_url(grace))) == [assigned.number, hidden.number]
    # the context panel counts the same tickets (it counted the hidden one too)
    assert _panel_tickets(response) == "3 open / 3"
    assert _panel_tickets(_web(other_agent).get(_url(grace))) == "2 open / 2"


def _panel_tickets(response: Any) -> str:
    """The customer-context panel's "Tickets" figure."""
    panel = _one(_soup(response), '[data-panel="customer_context"]')
    return str(_one(panel, "dl.facts dt:-soup-contains('Tickets') + dd").get_text(strip=True))


def test_a_supervisor_sees_every_ticket(grace, teams, supervisor):
    billing, shipping = teams
    made = [
        _ticket(grace, f"Ticket {i}", (billing, shipping)[i % 2], days_ago=5 - i) for i in range(4)
    ]
    response = _web(supervisor).get(_url(grace))
    assert _listed(response) == [t.number for t in reversed(made)]
    assert _panel_tickets(response) == "4 open / 4"


def test_merged_tickets_are_left_out_as_in_the_inbox(grace, teams, supervisor):
    billing, _ = teams
    source = _ticket(grace, "Duplicate", billing, days_ago=1)
    target = _ticket(grace, "Original", billing)
    services.ticket_merge(source=source, target=target, actor=supervisor)
    assert _listed(_web(supervisor).get(_url(grace))) == [target.number]


def test_the_page_shows_the_profile_identities_and_the_context_panel(grace, teams, agent):
    billing, _ = teams
    _ticket(grace, "Refund please", billing)
    response = _web(agent).get(_url(grace))
    soup = _soup(response)
    assert _one(soup, "title").text.strip().startswith("Grace Hopper · Customer")
    assert _one(soup, "h1").get_text(strip=True) == "Grace Hopper"
    back = _one(soup, ".crumbs a")
    assert (back["href"], back.get_text(strip=True)) == ("/", "← Inbox")
    card = _one(soup, "section.card.customer")
    facts = dict(
        zip(
            [dt.text for dt in card.find_all("dt")],
            [dd.text for dd in card.find_all("dd")],
            strict=True,
        )
    )
    assert facts["Email"] == "grace@example.com"
    assert facts["Phone"] == "+15550100"
    assert facts["Account"] == "Individual"
    assert "Customer since" in facts
    assert "Grace H." in _one(card, "ul.plain").get_text()
    # the ticket page's panel, from the same selector
    panel = _one(soup, '[data-panel="customer_context"]')
    assert panel is not None
    assert "Churn risk" in panel.get_text()
    assert _one(soup, ".pager").get_text(" ", strip=True) == "Page 1"


def test_the_empty_state(teams, supervisor):
    lonely = Customer.objects.create(name="No tickets yet", email="lonely@example.com")
    response = _web(supervisor).get(_url(lonely))
    assert response.status_code == 200
    soup = _soup(response)
    assert _one(soup, "table.customer-tickets td.empty").text == "No tickets you can see."


def test_the_tickets_are_paged_like_the_inbox(grace, teams, agent, other_agent, monkeypatch):
    billing, shipping = teams
    made = [_ticket(grace, f"Ticket {i}", billing, days_ago=10 - i) for i in range(3)]
    _ticket(grace, "Hidden newest", shipping)  # not counted in the agent's pages
    monkeypatch.setattr(
        selectors, "customer_ticket_page", partial(selectors.customer_ticket_page, page_size=2)
    )
    client = _web(agent)
    first = client.get(_url(grace))
    assert _listed(first) == [made[2].number, made[1].number]
    html = first.content.decode()
    assert f'href="{_url(grace)}?page=2" rel="next">Next →</a>' in html
    assert 'rel="prev"' not in html
    second = client.get(f"{_url(grace)}?page=2")
    assert _listed(second) == [made[0].number]
    html = second.content.decode()
    assert f'href="{_url(grace)}?page=1" rel="prev">← Previous</a>' in html
    assert 'rel="next"' not in html
    past = client.get(f"{_url(grace)}?page=3")
    assert past.status_code == 200
    assert "No tickets on this page." in past.content.decode()
    # and the Shipping agent's single page does not offer a next one
    assert 'rel="next"' not in _web(other_agent).get(_url(grace)).content.decode()


@pytest.mark.parametrize("page", ["0", "abc", "1001"])
def test_a_bad_page_number_is_refused_saying_why(grace, teams, agent, page):
    billing, _ = teams
    _ticket(grace, "Refund please", billing)
    response = _web(agent).get(f"{_url(grace)}?page={page}")
    assert response.status_code == 302
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [selectors.INBOX_PAGE_ERROR]


def test_the_page_costs_the_same_queries_whatever_the_number_of_tickets(grace, teams, agent):
    billing, shipping = teams
    _ticket(grace, "One", billing)
    client = _web(agent)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(_url(grace)).status_code == 200
        return len(ctx.captured_queries)

    count()  # the first answer fills caches (the customer's context, the session)
    one = count()
    for i in range(4):
        more = _ticket(grace, f"More {i}", billing if i % 2 else shipping)
        services.ticket_assign(ticket=more, assignee=agent)
    assert count() == one


def test_signed_out_is_sent_to_sign_in_and_only_get_is_allowed(client, grace, teams, agent):
    billing, _ = teams
    _ticket(grace, "Refund please", billing)
    response = client.get(_url(grace))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert _web(agent).post(_url(grace)).status_code == 405


def test_the_ticket_page_and_the_inbox_link_the_customer(grace, teams, agent):
    billing, _ = teams
    ticket = _ticket(grace, "Refund please", billing)
    client = _web(agent)
    soup = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    name = _one(soup, "section.card.customer .cust-name a")
    assert (name["href"], name.text) == (_url(grace), "Grace Hopper")
    inbox = BeautifulSoup(client.get("/?view=all").content, "html.parser")
    row = _one(inbox, f'tr[data-ticket-id="{ticket.pk}"]')
    cust = _one(row, "a.cust")
    assert (cust["href"], cust.text) == (_url(grace), "Grace Hopper")
