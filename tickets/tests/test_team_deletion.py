"""Deleting a team (docs/security.md "Team deletion").

A ticket with no team is visible to every agent (``tickets.selectors.ticket_visibility_q``).
``Ticket.team`` was ``SET_NULL``: a superuser deleting the team "Legal" in the admin left its
tickets with no team, shown (with their customers) to every agent, and the confirmation page
listed nothing about it. It is ``PROTECT`` now: a team that still has tickets is not
deleted, and the admin says which tickets stop it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse

from calls.models import QueueTeam
from routing.models import CategoryTeam
from support.auth.roles import AGENTS_GROUP
from tickets import services
from tickets.admin import TEAM_DELETE_BLOCKERS_SHOWN, TEAM_HAS_TICKETS, TeamAdmin
from tickets.models import CannedResponse, Team, Ticket
from tickets.selectors import ticket_visibility_q

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tickets_team_changelist")


def _delete_url(team: Team) -> str:
    return reverse("admin:tickets_team_delete", args=[team.pk])


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def legal(db: Any) -> Team:
    return Team.objects.create(name="Legal", slug="legal")


@pytest.fixture
def legal_ticket(legal: Team, customer: Any) -> Ticket:
    return services.ticket_create(
        customer=customer, subject="Subpoena from the court", body="Hello", team=legal
    )


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser(
        "root", email="root@example.com", password="pw-for-tests-1"
    )


@pytest.fixture
def deleting_supervisor(supervisor: Any) -> Any:
    """A supervisor given the permission to delete teams (supervisors may not by role)."""
    supervisor.user_permissions.add(Permission.objects.get(codename="delete_team"))
    return supervisor


def _seen_by(user: Any) -> set[int]:
    return set(Ticket.objects.filter(ticket_visibility_q(user)).values_list("pk", flat=True))


def test_the_database_refuses_to_empty_a_teams_tickets(legal: Team, legal_ticket: Ticket):
    with pytest.raises(ProtectedError):
        legal.delete()
    legal_ticket.refresh_from_db()
    assert legal_ticket.team == legal


@pytest.mark.parametrize("who", ["superuser", "deleting_supervisor"])
def test_a_team_with_tickets_is_not_deleted_and_the_page_names_them(
    request: Any, who: str, legal: Team, legal_ticket: Ticket, agent: Any
):
    """The page says why and lists the ticket (linked: the person may open it); confirming
    anyway deletes nothing, and the ticket stays out of other agents' sight."""
    user = request.getfixturevalue(who)
    browser = _browser(user)
    page = browser.get(_delete_url(legal))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Cannot delete team" in html
    assert "still has tickets" in html
    ticket_url = reverse("admin:tickets_ticket_change", args=[legal_ticket.pk])
    assert f'<a href="{ticket_url}">{legal_ticket}</a>' in html
    assert "Yes, I’m sure" not in html
    # not "your account doesn't have permission to delete ... ticket" (the supervisor may
    # not delete tickets): what blocks it is that they exist
    assert "permission" not in html

    confirmed = browser.post(_delete_url(legal), {"post": "yes"})
    assert confirmed.status_code == 200
    assert "still has tickets" in confirmed.content.decode()
    assert Team.objects.filter(pk=legal.pk).exists()
    legal_ticket.refresh_from_db()
    assert legal_ticket.team_id == legal.pk
    assert legal_ticket.pk not in _seen_by(agent)
    assert not LogEntry.objects.filter(object_id=str(legal.pk)).exists()


@pytest.mark.parametrize("who", ["superuser", "deleting_supervisor"])
def test_delete_selected_keeps_every_team_when_one_has_tickets(
    request: Any, who: str, legal: Team, legal_ticket: Ticket, agent: Any
):
    empty = Team.objects.create(name="Empty", slug="empty")
    browser = _browser(request.getfixturevalue(who))
    post = {"action": "delete_selected", "_selected_action": [legal.pk, empty.pk]}
    page = browser.post(CHANGELIST, post)
    assert page.status_code == 200
    html = page.content.decode()
    assert "A team that still has tickets cannot be deleted" in html
    assert str(legal_ticket) in html
    confirmed = browser.post(CHANGELIST, {**post, "post": "yes"})
    assert confirmed.status_code == 200
    assert set(Team.objects.values_list("pk", flat=True)) == {legal.pk, empty.pk}
    legal_ticket.refresh_from_db()
    assert legal_ticket.team_id == legal.pk
    assert legal_ticket.pk not in _seen_by(agent)


def test_a_ticket_the_person_deleting_may_not_see_is_not_named(
    django_user_model: Any, legal: Team, legal_ticket: Ticket
):
    """A staff agent of another team given the team permissions: the ticket that blocks the
    deletion is "(a ticket you cannot see)", nothing of it."""
    other = Team.objects.create(name="Sales", slug="sales")
    staff = django_user_model.objects.create_user(
        "staff-agent", password="pw-for-tests-1", is_staff=True
    )
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    other.members.add(staff)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_team", "delete_team"])
    )
    browser = _browser(staff)
    html = browser.get(_delete_url(legal)).content.decode()
    assert "Cannot delete team" in html
    assert "(a ticket you cannot see)" in html
    assert "Subpoena" not in html
    assert legal_ticket.number not in html
    assert reverse("admin:tickets_ticket_change", args=[legal_ticket.pk]) not in html
    browser.post(_delete_url(legal), {"post": "yes"})
    assert Team.objects.filter(pk=legal.pk).exists()


def test_the_page_lists_the_first_tickets_and_counts_the_rest(
    superuser: Any, legal: Team, customer: Any
):
    for i in range(TEAM_DELETE_BLOCKERS_SHOWN + 3):
        Ticket.objects.create(customer=customer, subject=f"Case {i}", team=legal)
    html = _browser(superuser).get(_delete_url(legal)).content.decode()
    linked = re.findall(r'href="/admin/tickets/ticket/(\d+)/change/"', html)
    assert len(linked) == TEAM_DELETE_BLOCKERS_SHOWN
    assert "… and 3 more ticket(s)" in html


@pytest.mark.parametrize("how", ["page", "action"])
def test_a_team_without_tickets_is_deleted_with_its_settings(superuser: Any, legal: Team, how: str):
    """Its canned replies, queue and category mappings go with it, as the page lists."""
    CannedResponse.objects.create(title="Legal hold", shortcut="hold", body="x", team=legal)
    QueueTeam.objects.create(queue_name="Legal queue", team=legal)
    CategoryTeam.objects.create(category="LEGAL", team=legal)
    browser = _browser(superuser)
    if how == "page":
        html = browser.get(_delete_url(legal)).content.decode()
        assert "Are you sure" in html
        assert "Legal hold" in html
        response = browser.post(_delete_url(legal), {"post": "yes"})
    else:
        post = {"action": "delete_selected", "_selected_action": [legal.pk], "post": "yes"}
        response = browser.post(CHANGELIST, post)
    assert response.status_code == 302
    assert not Team.objects.filter(pk=legal.pk).exists()
    assert not CannedResponse.objects.exists()
    assert not QueueTeam.objects.exists()
    assert not CategoryTeam.objects.exists()


@pytest.mark.parametrize("how", ["page", "action"])
def test_a_ticket_moved_in_after_the_check_is_a_message_not_an_error(
    monkeypatch: Any, superuser: Any, legal: Team, legal_ticket: Ticket, how: str
):
    """Between the confirmation's check and the delete a ticket may move into the team:
    the database refuses (ProtectedError), and the admin says so; nothing is deleted or
    logged (it was a 500, and "delete selected" had logged the deletion already)."""
    original = TeamAdmin.get_deleted_objects

    def checked_before_the_move(self: Any, objs: Any, request: Any) -> Any:
        moved = Ticket.objects.filter(pk=legal_ticket.pk)
        team = moved.get().team
        moved.update(team=None)
        try:
            return original(self, objs, request)
        finally:
            moved.update(team=team)

    monkeypatch.setattr(TeamAdmin, "get_deleted_objects", checked_before_the_move)
    browser = _browser(superuser)
    if how == "page":
        response = browser.post(_delete_url(legal), {"post": "yes"}, follow=True)
    else:
        post = {"action": "delete_selected", "_selected_action": [legal.pk], "post": "yes"}
        response = browser.post(CHANGELIST, post, follow=True)
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [TEAM_HAS_TICKETS]
    assert Team.objects.filter(pk=legal.pk).exists()
    assert Ticket.objects.get(pk=legal_ticket.pk).team_id == legal.pk
    assert not LogEntry.objects.filter(object_id=str(legal.pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_a_ticket_moving_in_while_the_team_is_deleted_stops_the_deletion(
    superuser: Any, legal: Team, customer: Any, agent: Any
):
    """A move to the team commits while the admin deletes it: the deletion waits for the
    team's row (``ticket_update`` locks the team a ticket moves to), then sees the ticket
    and is refused (real transactions; without the locks the deletion did not see the
    uncommitted move, and the database refused one of the two at commit: a 500)."""
    from django.db import transaction

    from tickets.tests.test_workbench_views import _commit_once_waited_on

    [ticket] = [services.ticket_create(customer=customer, subject="Contract", body="Hi")]

    def move() -> None:
        with transaction.atomic():
            services.ticket_update(ticket=ticket, team=legal)

    thread, failed = _commit_once_waited_on(move)
    try:
        response = _browser(superuser).post(_delete_url(legal), {"post": "yes"})
    finally:
        thread.join()
    assert failed == []
    assert response.status_code == 200
    assert "still has tickets" in response.content.decode()
    assert Team.objects.filter(pk=legal.pk).exists()
    assert Ticket.objects.get(pk=ticket.pk).team_id == legal.pk
    assert ticket.pk not in _seen_by(agent)
