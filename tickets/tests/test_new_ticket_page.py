"""The workbench's "New ticket" page (``/tickets/new``): an agent opens a ticket for a
customer who called or came by, with the API's create rules (``services.ticket_open``):
the customer found or created by address (one the agent could not see, audited), the
same checks, refused with the reasons by their fields and the values kept. Before, the
workbench had no way to open a ticket: only the API and the admin."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from support.models import AuditLog, OutboxEvent
from tickets import services
from tickets.models import Customer, Direction, Team, Ticket

pytestmark = pytest.mark.django_db

URL = "/tickets/new"


@pytest.fixture
def browser(agent: Any) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def _form(**changes: Any) -> dict[str, Any]:
    data = {
        "customer_email": "ada@example.com",
        "customer_name": "Ada Lovelace",
        "customer_phone": "+44 20 7946 0000",
        "subject": "Kettle leaks",
        "description": "It leaks from the lid since Monday.",
        "channel": "phone",
        "priority": "high",
        "team": "",
        "tags": "kettles, Warranty",
    }
    data.update(changes)
    return data


def _page(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_the_inbox_offers_it_and_the_page_has_the_form(browser: Client) -> None:
    assert 'href="/tickets/new"' in browser.get("/").content.decode()
    page = _page(browser.get(URL))
    for name in ("customer_email", "subject", "description", "channel", "priority", "team"):
        assert f'name="{name}"' in page, name
    assert "Let routing decide" in page


def test_an_agent_opens_a_ticket_for_a_new_customer(browser: Client, agent: Any) -> None:
    response = browser.post(URL, _form(take="1"))
    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket.number}/"
    customer = ticket.customer
    assert (customer.email, customer.name, customer.phone) == (
        "ada@example.com",
        "Ada Lovelace",
        "+44 20 7946 0000",
    )
    first = ticket.messages.get(direction=Direction.INBOUND)
    assert first.body_text == "It leaks from the lid since Monday."
    assert (ticket.channel, ticket.priority, ticket.created_by, ticket.assignee) == (
        "phone",
        "high",
        agent,
        agent,
    )
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["kettles", "warranty"]
    assert OutboxEvent.objects.filter(event_type="ticket.created").count() == 1
    assert f"{ticket.number} opened." in _page(browser.get(response["Location"]))


def test_refused_it_says_why_by_field_and_keeps_what_was_typed(browser: Client) -> None:
    response = browser.post(URL, _form(customer_email=""))
    assert response.status_code == 400
    page = _page(response)
    assert "Give the customer's e-mail address." in page
    assert 'value="Kettle leaks"' in page  # what was typed, kept
    assert "It leaks from the lid since Monday." in page
    assert 'aria-invalid="true" aria-describedby="err_customer_email"' in page
    tagged = browser.post(URL, _form(tags="x" * 70))  # refused by the service, by field
    assert tagged.status_code == 400
    assert "a tag has at most 64 characters" in _page(tagged)
    assert 'aria-describedby="err_tags"' in _page(tagged)
    assert not Ticket.objects.exists()
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("team", "reason"),
    [("abc", "A valid integer is required."), ("999999", "team_id: no team 999999.")],
)
def test_an_unknown_team_is_refused(browser: Client, team: str, reason: str) -> None:
    response = browser.post(URL, _form(team=team))
    assert response.status_code == 400
    assert reason in _page(response)
    assert not Ticket.objects.exists()


def test_a_team_is_kept(browser: Client) -> None:
    team = Team.objects.create(name="Kettles", slug="kettles")
    browser.post(URL, _form(team=str(team.pk)))
    assert Ticket.objects.get().team == team


def test_a_customer_the_agent_could_not_see_is_audited(browser: Client, agent: Any) -> None:
    """As in the API: naming a returning customer by address is allowed (agents log
    their calls) and recorded when the agent could not see them before."""
    other_team = Team.objects.create(name="Other", slug="other")
    known = Customer.objects.create(name="Ada", email="ada@example.com")
    services.ticket_create(customer=known, subject="Earlier", body="x", team=other_team)
    browser.post(URL, _form())
    opened = Ticket.objects.get(subject="Kettle leaks")
    assert opened.customer == known
    audit = AuditLog.objects.get(action="ticket.create_for_unseen_customer")
    assert (audit.actor, audit.object_id) == (agent, str(opened.pk))


def test_a_customer_page_fills_the_customer_in(browser: Client, agent: Any) -> None:
    team = Team.objects.create(name="Ours", slug="ours")
    team.members.add(agent)
    seen = Customer.objects.create(name="Bo", email="bo@example.com", phone="+1 555 0100")
    services.ticket_create(customer=seen, subject="Earlier", body="x", team=team)
    customer_page = browser.get(f"/customers/{seen.pk}/").content.decode()
    assert f'href="/tickets/new?customer={seen.pk}"' in customer_page
    page = _page(browser.get(URL, {"customer": seen.pk}))
    assert 'value="bo@example.com"' in page
    assert 'value="+1 555 0100"' in page


def test_a_customer_the_agent_may_not_see_is_not_filled_in(browser: Client) -> None:
    hidden_team = Team.objects.create(name="Hidden", slug="hidden")
    hidden = Customer.objects.create(name="Eve", email="eve@example.com")
    services.ticket_create(customer=hidden, subject="Secret", body="x", team=hidden_team)
    response = browser.get(URL, {"customer": hidden.pk})
    assert response.status_code == 404
    assert "eve@example.com" not in response.content.decode()


def test_only_get_and_post(browser: Client) -> None:
    assert browser.put(URL).status_code == 405


def test_people_without_a_role_are_refused(outsider: Any) -> None:
    client = Client()
    client.force_login(outsider)
    assert client.post(URL, _form()).status_code == 403
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"channel": "whatsapp"}, "channel", "Choose one of the channels offered."),
        ({"description": "x" * 50_001}, "description", "At most 50000 characters"),
        ({"customer_name": "x" * 201}, "customer_email", None),
    ],
)
def test_the_page_s_own_limits(
    browser: Client, changes: dict[str, str], field: str, reason: str | None
) -> None:
    """No channel thread is opened by hand (a reply would go to whatever identity the
    customer has there), a first message no longer than the composer takes, and a name
    too long is said under the name, not as a missing address (review 2026-12-07)."""
    response = browser.post(URL, _form(**changes))
    assert response.status_code == 400
    page = _page(response)
    if reason is None:
        assert "Give the customer's e-mail address." not in page
        assert 'aria-describedby="err_customer_name"' in page
    else:
        assert reason in page
    assert not Ticket.objects.exists()
