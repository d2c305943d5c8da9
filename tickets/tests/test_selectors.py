"""Selectors of the core: the visibility rule's in-memory forms agree with its query."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest

from tickets.models import Customer, Team, Ticket
from tickets.selectors import ticket_visibility_check, ticket_visibility_q, ticket_visible_to

pytestmark = pytest.mark.django_db


def test_the_per_ticket_and_batch_checks_agree_with_the_query(
    agent: Any, other_agent: Any, supervisor: Any
) -> None:
    """Every (team, assignee) combination, for an agent, another agent and a supervisor:
    ``ticket_visible_to`` and the batch form a live socket uses (roles and teams read
    once) say what ``ticket_visibility_q`` selects."""
    mine = Team.objects.create(name="Mine", slug="mine")
    other = Team.objects.create(name="Other", slug="other")
    mine.members.add(agent)
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    tickets = [
        Ticket.objects.create(customer=customer, subject="s", team=team, assignee=assignee)
        for team, assignee in product((None, mine, other), (None, agent, other_agent))
    ]
    for user in (agent, other_agent, supervisor):
        visible = Ticket.objects.filter(ticket_visibility_q(user))
        selected = set(visible.values_list("pk", flat=True))
        check = ticket_visibility_check(user)
        for ticket in tickets:
            expected = ticket.pk in selected
            assert check(ticket.team_id, ticket.assignee_id) is expected
            assert (
                ticket_visible_to(user, team_id=ticket.team_id, assignee_id=ticket.assignee_id)
                is expected
            )
    assert 0 < len(selected) == len(tickets)  # the supervisor's: all of them


@pytest.mark.django_db
def test_a_ticket_opened_with_a_system_note_is_the_systems_not_one_it_is_merged_into(
    customer: Any,
) -> None:
    """The marker is the system entry a ticket was opened with, on that ticket: a ticket
    opened with a message, or with only a subject (the customer's words), is not the
    system's, nor is one that a merge brought such an entry into."""
    from tickets.selectors import message_opened_ticket, ticket_opened_by_system
    from tickets.services import ticket_create, ticket_merge, ticket_update

    def from_loaded(ticket: Any) -> bool:
        # the same rule read from messages already listed (knowledge's conversation)
        return any(message_opened_ticket(message=m, ticket=ticket) for m in ticket.messages.all())

    opened = ticket_create(customer=customer, subject="IVR failure: timeout", system_note="x")
    written = ticket_create(customer=customer, subject="Refund", body="Where is my refund?")
    subject_only = ticket_create(customer=customer, subject="Where is my refund?")
    ticket_update(ticket=subject_only, priority="high")  # a system entry of its own
    assert subject_only.messages.filter(kind="system").exists()

    assert ticket_opened_by_system(ticket=opened) is from_loaded(opened) is True
    assert ticket_opened_by_system(ticket=written) is from_loaded(written) is False
    assert ticket_opened_by_system(ticket=subject_only) is from_loaded(subject_only) is False
    ticket_merge(source=opened, target=written)
    assert written.messages.filter(metadata__opened_ticket=True).exists()
    assert ticket_opened_by_system(ticket=written) is from_loaded(written) is False


def test_a_change_by_a_person_is_told_from_the_systems(customer: Any, supervisor: Any) -> None:
    """Read from the timeline: a person's change of the named fields (an entry with an
    author), not the system's (routing, SLA escalations), nor another field's, nor one a
    merge brought in from another ticket."""
    from tickets.selectors import ticket_changed_by_person
    from tickets.services import ticket_create, ticket_merge, ticket_update

    fields = ("team", "priority", "needs_review")
    ticket = ticket_create(customer=customer, subject="s", body="b")
    ticket_update(ticket=ticket, priority="high", needs_review=True)  # the system's
    ticket_update(ticket=ticket, actor=supervisor, status="pending")  # another field
    assert ticket_changed_by_person(ticket=ticket, fields=fields) is False

    other = ticket_create(customer=customer, subject="o", body="b")
    ticket_update(ticket=other, actor=supervisor, priority="urgent")
    ticket_merge(source=other, target=ticket, actor=supervisor)
    assert ticket_changed_by_person(ticket=ticket, fields=fields) is False

    ticket_update(ticket=ticket, actor=supervisor, needs_review=False)
    assert ticket_changed_by_person(ticket=ticket, fields=fields) is True
    assert ticket_changed_by_person(ticket=ticket, fields=("team",)) is False
