"""A customer's contact details from the workbench (``POST /customers/<id>/contact``,
``services.customer_contact_update``). A reply to a phone or API ticket goes by e-mail,
and one to a customer with no address failed with "add the address and reply again"
(docs/channels.md), which only the admin could do. Now, on the customer page: the name
by whoever sees every ticket of the customer; the phone number and the address, which
decide whose calls, mail and replies are this customer's, by supervisors, with the
checks the admin never made (another customer's address, e-mail identity or number; an
erased customer; a field changed since the page was drawn)."""

from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from support.errors import InvalidInput
from support.models import AuditLog
from tickets import services
from tickets.models import ChannelIdentity, Customer, Team, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(agent: Any) -> Team:
    made = Team.objects.create(name="Ours", slug="ours")
    made.members.add(agent)
    return made


@pytest.fixture
def caller(team: Team) -> Customer:
    """A customer known by a phone number only (an IVR escalation, a call)."""
    customer = Customer.objects.create(name="Caller", phone="+442079460000")
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


def _page(response: Any) -> str:
    return html.unescape(response.content.decode())


def _row(customer: Customer) -> tuple[str, str, str]:
    row = Customer.objects.get(pk=customer.pk)
    return (row.name, row.email, row.phone)


def test_a_supervisor_adds_an_address_so_replies_can_reach_the_caller(
    supervisor: Any, caller: Customer
) -> None:
    page = _page(_browser(supervisor).get(f"/customers/{caller.pk}/"))
    assert 'name="email"' in page
    assert 'name="phone"' in page
    response = _post(
        supervisor, caller, name="Cara Caller", email=" cara@example.com ", phone="+44 20 7946-0001"
    )
    assert response.status_code == 200
    assert "Cara Caller's details saved." in _page(response)
    # the number kept as calls match it: digits and +
    assert _row(caller) == ("Cara Caller", "cara@example.com", "+442079460001")
    audit = AuditLog.objects.get(action="customer.contact_updated")
    assert (audit.actor, audit.details) == (supervisor, {"fields": ["name", "phone", "email"]})
    # ticket search reads the customer's new name and number
    for query in ("Cara", "+442079460001"):
        found = _page(_browser(supervisor).get("/", {"view": "all", "q": query}))
        assert "Called" in found, query


def test_an_agent_edits_the_name_not_the_number_or_the_address(
    agent: Any, caller: Customer
) -> None:
    page = _page(_browser(agent).get(f"/customers/{caller.pk}/"))
    assert 'name="name"' in page
    assert 'name="email"' not in page
    assert 'name="phone"' not in page
    assert "changed by a supervisor" in page
    assert "details saved" in _page(_post(agent, caller, name="Cara"))
    for fields in ({"email": "cara@example.com"}, {"phone": "+15550009999"}):
        assert _post(agent, caller, **fields).status_code == 403
    assert _row(caller) == ("Cara", "", "+442079460000")


def test_only_who_sees_every_ticket_of_the_customer(
    agent: Any, other_agent: Any, caller: Customer
) -> None:
    """The details follow the customer into its other tickets: an agent who sees one of
    them but not another may not change them (as for a merge across customers)."""
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    services.ticket_create(customer=caller, subject="Other team", body="x", team=elsewhere)
    page = _page(_browser(agent).get(f"/customers/{caller.pk}/"))
    assert "Edit contact details" not in page
    assert _post(agent, caller, name="X").status_code == 403
    # someone who sees none of them: as if the customer did not exist
    assert _post(other_agent, caller, name="X").status_code == 404
    assert _row(caller) == ("Caller", "", "+442079460000")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": "not-an-address"}, "is not an e-mail address"),
        ({"email": "TAKEN@example.com"}, "another customer has this address"),
        ({"email": "old@example.com"}, "another customer has this address"),  # an identity
        ({"phone": "+1 (555) 000-9999"}, "another customer has this number"),
        ({"phone": "+44 20 7946 0001"}, "another customer has this number"),  # stored as typed
        ({"phone": "+44 ２０ 7946 0009"}, "is not a phone number"),  # full-width digits
        ({"phone": "+ ext"}, "is not a phone number"),
        ({"name": "x" * 201}, "name: at most 200 characters"),
        ({"name": "a\nb"}, "name: at most 200 characters, no control characters"),
    ],
)
def test_refusals_say_why_and_change_nothing(
    supervisor: Any, caller: Customer, fields: dict[str, str], reason: str
) -> None:
    Customer.objects.create(name="Other", email="taken@example.com", phone="+15550009999")
    Customer.objects.create(name="Typed", phone="+44 20 7946 0001")  # as the API keeps it
    moved = Customer.objects.create(name="Moved", email="new@example.com")
    # an address this customer had before a supervisor changed it: mail from it is theirs
    ChannelIdentity.objects.create(customer=moved, channel="email", external_id="old@example.com")
    response = _post(supervisor, caller, **fields)
    assert response.status_code == 200  # back on the page, the reason on it
    assert reason in _page(response)
    assert _row(caller) == ("Caller", "", "+442079460000")
    assert not AuditLog.objects.filter(action="customer.contact_updated").exists()


def test_an_erased_customer_gets_no_details_back(supervisor: Any, caller: Customer) -> None:
    from tickets.context.privacy import customer_erase

    customer_erase(customer=caller, actor=supervisor, via="test")
    before = _row(caller)
    page = _page(_browser(supervisor).get(f"/customers/{caller.pk}/"))
    assert "Edit contact details" not in page
    response = _post(supervisor, caller, name="Back Again", email="back@example.com")
    assert "This customer's data was erased" in _page(response)
    assert _row(caller) == before


def test_a_stale_form_does_not_overwrite_a_newer_change(
    supervisor: Any, agent: Any, caller: Customer
) -> None:
    """The form sends the values it was drawn with: a field someone changed since is
    refused, not overwritten (a supervisor's page drawn before an address was added sent
    an empty address, which wiped it)."""
    drawn = {"was_name": "Caller", "was_phone": caller.phone, "was_email": ""}
    _post(supervisor, caller, name="Caller", phone=caller.phone, email="new@example.com", **drawn)
    assert _row(caller)[1] == "new@example.com"
    # the same page drawn before that change: the address it shows is left as drawn, so
    # only the name is sent and saved (the address added since stays)
    _post(supervisor, caller, name="Cara", phone=caller.phone, email="", **drawn)
    assert _row(caller)[:2] == ("Cara", "new@example.com")
    # a field the person changed that someone else changed since: refused, not overwritten
    stale = _post(supervisor, caller, name="Cara", phone=caller.phone, email="mine@x.org", **drawn)
    assert "Email was changed by someone else since this page was loaded" in _page(stale)
    assert _row(caller)[1] == "new@example.com"


def test_a_number_left_as_drawn_is_not_touched(supervisor: Any, caller: Customer) -> None:
    """A number stored as typed elsewhere (the API keeps it so) is not rewritten, nor
    checked, by a change of the name alone."""
    Customer.objects.filter(pk=caller.pk).update(phone="+1 555 000 1111")
    Customer.objects.create(name="Same number", phone="+15550001111")
    drawn = {"was_name": "Caller", "was_phone": "+1 555 000 1111", "was_email": ""}
    response = _post(supervisor, caller, name="Cara", phone="+1 555 000 1111", email="", **drawn)
    assert "Cara's details saved." in _page(response)
    assert _row(caller) == ("Cara", "", "+1 555 000 1111")
    audit = AuditLog.objects.get(action="customer.contact_updated")
    assert audit.details == {"fields": ["name"]}


def test_nothing_changed_says_so(supervisor: Any, caller: Customer) -> None:
    response = _post(supervisor, caller, phone="+44 20 7946 0000")  # the same number
    assert "Nothing to change." in response.content.decode()
    assert not AuditLog.objects.filter(action="customer.contact_updated").exists()


def test_only_post(agent: Any, caller: Customer) -> None:
    assert _browser(agent).get(f"/customers/{caller.pk}/contact").status_code == 405
    assert Ticket.objects.count() == 1


def _advisory_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_supervisors_giving_one_number_to_two_customers_take_turns(
    supervisor: Any, other_session: Any
) -> None:
    """No unique index holds numbers stored as typed: the check alone let two saves at once
    each see the number free and both keep it. The second now waits for the first's
    commit, then sees the number taken."""
    first = Customer.objects.create(name="First", phone="+15550000001")
    second = Customer.objects.create(name="Second", phone="+15550000002")
    number = "+442079460777"
    other_session.ensure_connection()
    raw = other_session.connection  # psycopg's own, used from this thread only
    raw.autocommit = False
    with raw.cursor() as cursor:  # the first supervisor's save, not committed yet
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"customer-phone:{number}"]
        )
        cursor.execute("UPDATE tickets_customer SET phone = %s WHERE id = %s", [number, first.pk])

    def save() -> Any:
        try:
            return services.customer_contact_update(
                customer=Customer.objects.get(pk=second.pk), actor=supervisor, phone=number
            )
        except InvalidInput as refused:
            return refused
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(save)
        waited = False
        for _ in range(200):  # until the second save waits on the first's lock (or is done)
            waited = _advisory_waiters() > 0
            if waited or result.done():
                break
            time.sleep(0.05)
        raw.commit()
        outcome = result.result(timeout=60)
    assert waited
    assert isinstance(outcome, InvalidInput), outcome
    assert "another customer has this number" in str(outcome)
    assert Customer.objects.get(pk=second.pk).phone == "+15550000002"
