"""Who runs the ticket admin's actions and changes a ticket's assignee there: the
workbench's rules, whatever Django permissions a staff agent was given (docs/security.md
"Roles": a staff agent given a view permission runs none of the actions).

- a view permission runs no action (Django offers an action with no ``permissions`` to
  whoever opens the list);
- with ``change_ticket``, an agent sets the status and the priority of the tickets it sees
  (as in the workbench) and releases its own tickets, not someone else's ("Only
  supervisors…", all or nothing), and gives a ticket to nobody else through the form;
- clearing "needs review" (logged as "reviewed by a supervisor") is the supervisors'.

Before, all of these were open to a staff agent with the view permission, and the form
gave a ticket to anyone.
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from tickets import services
from tickets.models import Customer, Team, Ticket
from tickets.tests.admin_helpers import signed_in, staff_agent

pytestmark = pytest.mark.django_db

URL = "/admin/tickets/ticket/"


@pytest.fixture
def team() -> Team:
    return Team.objects.create(name="Ours", slug="ours")


@pytest.fixture
def ticket(team: Team, other_agent: Any) -> Ticket:
    """A ticket of our team, taken by another agent, that routing sent for review."""
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    made = services.ticket_create(customer=customer, subject="Kettle", body="Hi", team=team)
    Ticket.objects.filter(pk=made.pk).update(needs_review=True)
    team.members.add(other_agent)
    return services.ticket_assign(ticket=made, assignee=other_agent)


def _run(user: Any, action: str, ticket: Ticket) -> str:
    response = signed_in(user).post(
        URL, {"action": action, "_selected_action": [ticket.pk]}, follow=True
    )
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _state(ticket: Ticket) -> tuple[Any, ...]:
    row = Ticket.objects.get(pk=ticket.pk)
    return (row.status, row.priority, row.needs_review, row.assignee_id)


ACTIONS = (
    "mark_resolved",
    "mark_closed",
    "set_priority_urgent",
    "set_priority_high",
    "clear_needs_review",
    "unassign",
)


def test_a_staff_agent_with_the_view_permission_runs_no_action(
    django_user_model: Any, team: Team, ticket: Ticket
) -> None:
    viewer = staff_agent(django_user_model, team, "view_ticket")
    page = signed_in(viewer).get(URL).content.decode()
    before = _state(ticket)
    for action in ACTIONS:
        assert f'value="{action}"' not in page, action  # not offered
        _run(viewer, action, ticket)  # nor run when sent anyway
        assert _state(ticket) == before, action


def test_a_staff_agent_that_may_change_tickets_works_them_as_in_the_workbench(
    django_user_model: Any, team: Team, ticket: Ticket
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket")
    page = _run(editor, "clear_needs_review", ticket)
    assert "Only supervisors can clear 'needs review'." in page
    page = _run(editor, "unassign", ticket)  # another agent's ticket
    assert "Only supervisors release tickets assigned to other people." in page
    assert _state(ticket) == ("new", ticket.priority, True, ticket.assignee_id)

    # what the workbench lets it do to a ticket it sees
    _run(editor, "set_priority_urgent", ticket)
    _run(editor, "mark_resolved", ticket)
    assert _state(ticket) == ("resolved", "urgent", True, ticket.assignee_id)
    services.ticket_assign(ticket=ticket, assignee=editor)
    assert "1 ticket(s) unassigned." in _run(editor, "unassign", ticket)  # its own
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None


def test_a_supervisor_still_runs_them(supervisor: Any, ticket: Ticket) -> None:
    _run(supervisor, "clear_needs_review", ticket)
    assert "1 ticket(s) unassigned." in _run(supervisor, "unassign", ticket)
    _run(supervisor, "mark_closed", ticket)
    assert _state(ticket) == ("closed", ticket.priority, False, None)


def _change_form(ticket: Ticket, assignee: Any) -> dict[str, Any]:
    return {
        "customer": ticket.customer_id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "team": ticket.team_id,
        "assignee": assignee.pk if assignee is not None else "",
        "channel": ticket.channel,
        "needs_review": "on" if ticket.needs_review else "",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "routing_decisions-TOTAL_FORMS": "0",
        "routing_decisions-INITIAL_FORMS": "0",
    }


def test_the_form_gives_a_ticket_to_someone_else_for_supervisors_only(
    django_user_model: Any, team: Team, ticket: Ticket, supervisor: Any, agent: Any
) -> None:
    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket")
    url = f"{URL}{ticket.pk}/change/"
    taken_by = ticket.assignee_id
    for assignee in (agent, None):  # to someone else; released while not its own
        response = signed_in(editor).post(url, _change_form(ticket, assignee))
        assert response.status_code == 200  # the form again, saying why
        assert "Only supervisors assign tickets to other people." in response.content.decode()
        assert Ticket.objects.get(pk=ticket.pk).assignee_id == taken_by

    # taken (as in the workbench), released, taken again
    for assignee in (editor, None, editor):
        response = signed_in(editor).post(url, _change_form(ticket, assignee))
        assert response.status_code == 302, response.content.decode()[:2000]
        assert Ticket.objects.get(pk=ticket.pk).assignee == assignee

    response = signed_in(supervisor).post(url, _change_form(ticket, agent))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Ticket.objects.get(pk=ticket.pk).assignee == agent


def test_the_rule_holds_for_the_row_as_it_is_written(
    django_user_model: Any,
    team: Team,
    ticket: Ticket,
    other_agent: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The form checked a release of the agent's own ticket; another agent took it before
    the save: the release is refused (403), not written over the other's assignment."""
    from tickets.admin import TicketAdminForm

    editor = staff_agent(django_user_model, team, "view_ticket", "change_ticket")
    services.ticket_assign(ticket=ticket, assignee=editor)
    checked = TicketAdminForm.clean_assignee

    def checked_then_taken(form: TicketAdminForm) -> Any:
        value = checked(form)
        Ticket.objects.filter(pk=ticket.pk).update(assignee=other_agent)
        return value

    monkeypatch.setattr(TicketAdminForm, "clean_assignee", checked_then_taken)
    assigned: list[Any] = []
    monkeypatch.setattr(services, "ticket_assign", lambda **kwargs: assigned.append(kwargs))
    response = signed_in(editor).post(f"{URL}{ticket.pk}/change/", _change_form(ticket, None))
    assert response.status_code == 403
    assert assigned == []  # (the page's transaction, the other's update with it, rolled back)
