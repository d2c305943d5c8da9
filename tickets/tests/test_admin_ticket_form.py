"""The ticket admin's add and change forms save through the services, as the workbench
and the API do: every edit validated, written to the timeline and published, and no
field on the form that its save would drop.

Before: the change form saved status, priority, team, subject and assignee through
``ticket_update`` and silently dropped "needs review", the customer, the channel fields
and "merged into" ("changed successfully", nothing changed); tags were written by the
form alone (no timeline entry, no ``ticket.updated`` event); a staff agent moving a
ticket to no team got an error page; and the add form saved a bare row (no first
message, no ``ticket.created`` event, so nothing routed it, no due times).
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from support.models import OutboxEvent
from tickets import services
from tickets.models import Customer, Direction, MessageKind, Tag, Team, Ticket
from tickets.tests.admin_helpers import signed_in, staff_agent

pytestmark = pytest.mark.django_db

URL = "/admin/tickets/ticket/"


@pytest.fixture
def team() -> Team:
    return Team.objects.create(name="Ours", slug="ours")


@pytest.fixture
def ticket(team: Team) -> Ticket:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    made = services.ticket_create(
        customer=customer, subject="Kettle", body="It leaks.", team=team, tags=["kettles"]
    )
    Ticket.objects.filter(pk=made.pk).update(needs_review=True)
    return Ticket.objects.get(pk=made.pk)


def _form(ticket: Ticket, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "customer": ticket.customer_id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "team": ticket.team_id or "",
        "assignee": ticket.assignee_id or "",
        "tags": list(ticket.tags.values_list("pk", flat=True)),
        "channel": ticket.channel,
        "needs_review": "on" if ticket.needs_review else "",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "routing_decisions-TOTAL_FORMS": "0",
        "routing_decisions-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def _notes(ticket: Ticket) -> list[str]:
    return list(ticket.messages.filter(kind=MessageKind.SYSTEM).values_list("body_text", flat=True))


def _updates(ticket: Ticket) -> list[dict[str, Any]]:
    rows = OutboxEvent.objects.filter(event_type="ticket.updated", payload__ticket_id=ticket.pk)
    return [row.payload.get("changes", {}) for row in rows.order_by("id")]


def test_a_supervisor_clears_needs_review_on_the_form(supervisor: Any, ticket: Ticket) -> None:
    response = signed_in(supervisor).post(
        f"{URL}{ticket.pk}/change/", _form(ticket, needs_review="")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Ticket.objects.get(pk=ticket.pk).needs_review is False
    assert any("reviewed by a supervisor" in note for note in _notes(ticket))
    assert {"needs_review": [True, False]} in _updates(ticket)


def test_a_staff_agent_does_not_clear_it(
    django_user_model: Any, team: Team, ticket: Ticket
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket", "add_ticket")
    page = signed_in(editor).get(f"{URL}{ticket.pk}/change/").content.decode()
    assert 'name="needs_review"' not in page  # shown, not a field
    response = signed_in(editor).post(f"{URL}{ticket.pk}/change/", _form(ticket, needs_review=""))
    assert response.status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).needs_review is True


def test_tags_are_changed_through_the_service(supervisor: Any, ticket: Ticket) -> None:
    billing = Tag.objects.create(name="billing")
    response = signed_in(supervisor).post(
        f"{URL}{ticket.pk}/change/", _form(ticket, tags=[billing.pk])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(Ticket.objects.get(pk=ticket.pk).tags.values_list("name", flat=True)) == ["billing"]
    assert {"tags": [["kettles"], ["billing"]]} in _updates(ticket)
    assert any("billing" in note for note in _notes(ticket))


def test_the_fields_the_save_cannot_apply_are_read_only(
    supervisor: Any, ticket: Ticket, team: Team
) -> None:
    """Where it came from and what it was merged into: shown, not editable (the merge is
    the workbench's, which moves the conversation)."""
    other = Customer.objects.create(name="Eve", email="eve@example.com")
    target = services.ticket_create(customer=other, subject="Other", body="x", team=team)
    page = signed_in(supervisor).get(f"{URL}{ticket.pk}/change/").content.decode()
    for name in ("customer", "channel", "channel_account_id", "origin_platform_id", "merged_into"):
        assert f'name="{name}"' not in page, name
    response = signed_in(supervisor).post(
        f"{URL}{ticket.pk}/change/",
        _form(ticket, customer=other.pk, merged_into=target.pk, channel="email"),
    )
    assert response.status_code == 302
    row = Ticket.objects.get(pk=ticket.pk)
    assert (row.customer_id, row.merged_into_id, row.channel) == (
        ticket.customer_id,
        None,
        ticket.channel,
    )


def test_a_staff_agent_moving_a_ticket_to_no_team_is_told_why(
    django_user_model: Any, team: Team, ticket: Ticket
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket", "add_ticket")
    response = signed_in(editor).post(f"{URL}{ticket.pk}/change/", _form(ticket, team=""))
    assert response.status_code == 200  # the form again, saying why (was an error page)
    assert services.NO_TEAM_REFUSAL in html.unescape(response.content.decode())
    assert Ticket.objects.get(pk=ticket.pk).team_id == team.pk


def test_a_ticket_added_here_is_opened_as_the_api_opens_one(
    django_user_model: Any, team: Team
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket", "add_ticket")
    customer = Customer.objects.create(name="Bo", email="bo@example.com")
    # a customer and a tag the agent sees (a ticket of its team): the form offers those
    services.ticket_create(
        customer=customer, subject="Earlier", body="x", team=team, tags=["kettles"]
    )
    kettles = Tag.objects.get(name="kettles")
    page = signed_in(editor).get(f"{URL}add/").content.decode()
    assert 'name="description"' in page
    assert 'name="needs_review"' not in page
    assert 'name="status"' not in page
    response = signed_in(editor).post(
        f"{URL}add/",
        {
            "customer": customer.pk,
            "subject": "Broken lid",
            "description": "The lid came off.",
            "priority": "high",
            "team": team.pk,
            "assignee": editor.pk,
            "tags": [kettles.pk],
            "channel": "phone",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
            "routing_decisions-TOTAL_FORMS": "0",
            "routing_decisions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, [
        line for line in response.content.decode().splitlines() if "errorlist" in line
    ]
    made = Ticket.objects.get(subject="Broken lid")
    assert response["Location"] == URL  # the list, saying it was added
    first = made.messages.get(direction=Direction.INBOUND)
    assert (first.body_text, first.author_customer_id) == ("The lid came off.", customer.pk)
    assert (made.created_by, made.assignee, made.priority) == (editor, editor, "high")
    assert made.waiting_since is not None  # waiting for an answer, as intake sets it
    assert list(made.tags.values_list("name", flat=True)) == ["kettles"]
    created = OutboxEvent.objects.get(event_type="ticket.created", payload__ticket_id=made.pk)
    assert created.payload.get("tags") == ["kettles"]


def test_an_agent_adds_no_ticket_for_someone_else(
    django_user_model: Any, team: Team, agent: Any
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket", "add_ticket")
    team.members.add(agent)
    customer = Customer.objects.create(name="Bo", email="bo@example.com")
    services.ticket_create(customer=customer, subject="Earlier", body="x", team=team)
    response = signed_in(editor).post(
        f"{URL}add/",
        {
            "customer": customer.pk,
            "subject": "Broken lid",
            "priority": "normal",
            "team": team.pk,
            "assignee": agent.pk,
            "channel": "phone",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
            "routing_decisions-TOTAL_FORMS": "0",
            "routing_decisions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "Only supervisors assign tickets to other people." in html.unescape(
        response.content.decode()
    )
    assert not Ticket.objects.filter(subject="Broken lid").exists()


def test_the_add_page_opens_no_channel_thread_by_hand(
    django_user_model: Any, team: Team, supervisor: Any
) -> None:
    """Which account and whose channel id a reply goes to are channel intake's alone
    (review 2026-12-07): set here, a reply went from the company's WhatsApp number to any
    number typed in, or into another web chat visitor's chat. The channel is a call or
    "other", as on the workbench's New ticket page, for supervisors too."""
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket", "add_ticket")
    customer = Customer.objects.create(name="Bo", email="bo@example.com")
    services.ticket_create(customer=customer, subject="Earlier", body="x", team=team)
    form = {
        "customer": customer.pk,
        "subject": "By hand",
        "priority": "normal",
        "team": team.pk,
        "channel_account_id": "7",
        "origin_platform_id": "15550001111",
        "is_bot_handoff": "on",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "routing_decisions-TOTAL_FORMS": "0",
        "routing_decisions-INITIAL_FORMS": "0",
    }
    for user in (editor, supervisor):
        page = signed_in(user).get(f"{URL}add/").content.decode()
        for name in ("channel_account_id", "origin_platform_id", "is_bot_handoff"):
            assert f'name="{name}"' not in page, name
        assert 'value="whatsapp"' not in page
        refused = signed_in(user).post(f"{URL}add/", {**form, "channel": "whatsapp"})
        assert refused.status_code == 200  # the form again
        assert "Select a valid choice" in refused.content.decode()
    assert not Ticket.objects.filter(subject="By hand").exists()
    response = signed_in(editor).post(f"{URL}add/", {**form, "channel": "phone"})
    assert response.status_code == 302
    made = Ticket.objects.get(subject="By hand")
    assert (made.channel, made.channel_account_id, made.origin_platform_id) == ("phone", "", "")
    assert made.is_bot_handoff is False
