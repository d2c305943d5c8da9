"""A customer's contact details from the workbench (``POST /customers/<id>/contact``,
``services.customer_contact_update``). A reply to a phone or API ticket goes by e-mail,
and one to a customer with no address failed with "add the address and reply again"
(docs/channels.md), which no agent could do: only the admin changed a customer. Now an
agent who sees every ticket of the customer adds an address (and edits the name and
phone); replacing an address is a supervisor's."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from support.models import AuditLog
from tickets import services
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(agent: Any) -> Team:
    made = Team.objects.create(name="Ours", slug="ours")
    made.members.add(agent)
    return made


@pytest.fixture
def caller(team: Team) -> Customer:
    """A customer known by a phone number only (an IVR escalation, a call)."""
    customer = Customer.objects.create(name="Caller", phone="+44 20 7946 0000")
    services.ticket_create(customer=customer, subject="Called", body="x", team=team)
    return customer


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(user: Any, customer: Customer, **fields: str) -> Any:
    return _browser(user).post(
        f"/customers/{customer.pk}/contact",
        fields,
        HTTP_REFERER=f"http://testserver/customers/{customer.pk}/",
        follow=True,
    )


def test_an_agent_adds_an_address_so_replies_can_reach_the_caller(
    agent: Any, caller: Customer
) -> None:
    page = _browser(agent).get(f"/customers/{caller.pk}/").content.decode()
    assert "Edit contact details" in page
    assert 'name="email"' in page
    response = _post(agent, caller, name="Cara Caller", email=" cara@example.com ")
    assert response.status_code == 200
    assert "Cara Caller's details saved." in html.unescape(response.content.decode())
    row = Customer.objects.get(pk=caller.pk)
    assert (row.name, row.email, row.phone) == ("Cara Caller", "cara@example.com", caller.phone)
    audit = AuditLog.objects.get(action="customer.contact_updated")
    assert (audit.actor, audit.details) == (agent, {"fields": ["name", "email"]})
    # ticket search reads the customer's new name
    found = _browser(agent).get("/", {"view": "all", "q": "Cara"}).content.decode()
    assert "Called" in found


def test_an_agent_does_not_replace_an_address(
    agent: Any, supervisor: Any, caller: Customer
) -> None:
    Customer.objects.filter(pk=caller.pk).update(email="first@example.com")
    page = _browser(agent).get(f"/customers/{caller.pk}/").content.decode()
    assert 'name="email"' not in page  # shown, with why
    response = _post(agent, caller, email="attacker@example.net")
    assert response.status_code == 403
    assert Customer.objects.get(pk=caller.pk).email == "first@example.com"
    _post(supervisor, caller, email="second@example.com")
    assert Customer.objects.get(pk=caller.pk).email == "second@example.com"


def test_only_who_sees_every_ticket_of_the_customer(
    agent: Any, other_agent: Any, caller: Customer
) -> None:
    """The details follow the customer into its other tickets: an agent who sees one of
    them but not another may not change them (as for a merge across customers)."""
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    services.ticket_create(customer=caller, subject="Other team", body="x", team=elsewhere)
    page = _browser(agent).get(f"/customers/{caller.pk}/").content.decode()
    assert "Edit contact details" not in page
    assert _post(agent, caller, phone="+1 555 0100").status_code == 403
    # someone who sees none of them: as if the customer did not exist
    assert _post(other_agent, caller, phone="+1 555 0100").status_code == 404
    assert Customer.objects.get(pk=caller.pk).phone == "+44 20 7946 0000"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": "not-an-address"}, "is not an e-mail address"),
        ({"email": "taken@example.com"}, "another customer has this address"),
        ({"name": "x" * 201}, "name: at most 200 characters"),
        ({"phone": "+1\n555"}, "phone: at most 32 characters, no control characters"),
    ],
)
def test_refusals_say_why_and_change_nothing(
    agent: Any, caller: Customer, fields: dict[str, str], reason: str
) -> None:
    Customer.objects.create(name="Other", email="Taken@example.com")
    response = _post(agent, caller, **fields)
    assert response.status_code == 200  # back on the page, the reason on it
    assert reason in html.unescape(response.content.decode())
    row = Customer.objects.get(pk=caller.pk)
    assert (row.name, row.email, row.phone) == ("Caller", "", "+44 20 7946 0000")
    assert not AuditLog.objects.filter(action="customer.contact_updated").exists()


def test_nothing_changed_says_so(agent: Any, caller: Customer) -> None:
    response = _post(agent, caller, phone=caller.phone)
    assert "Nothing to change." in response.content.decode()
    assert not AuditLog.objects.filter(action="customer.contact_updated").exists()


def test_only_post(agent: Any, caller: Customer) -> None:
    assert _browser(agent).get(f"/customers/{caller.pk}/contact").status_code == 405
    assert Ticket.objects.count() == 1
