"""The admin links and names related objects only as far as the person looking may reach
them (``support.auth.admin.admin_link``, docs/security.md "Links in the admin").

Django 5.2 links a read-only foreign key to the related object's admin page, naming it,
whenever that page exists (``AdminReadonlyField.get_admin_url``), and the project's own
link fields (a ticket's workbench page, a routing decision's ticket, a delivery's circuit)
linked whoever looked. Here: staff users with a few Django permissions, agents of one team,
the supervisor role and a superuser.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from support.auth.roles import AGENTS_GROUP

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


def _staff_agent(django_user_model: Any, username: str, team: Any, *perms: str) -> Any:
    """Staff (some sign-in setups make every person staff), in the Agents group and one
    team, with these Django permissions (``app_label.codename``)."""
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(user)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


@pytest.fixture
def world(customer: Any) -> dict[str, Any]:
    from tickets import services
    from tickets.models import Customer, Team

    ours = Team.objects.create(name="Ours", slug="ours")
    theirs = Team.objects.create(name="Theirs", slug="theirs")
    secret = Customer.objects.create(name="Quentin Secret", email="quentin@example.com")
    return {
        "ours": ours,
        "theirs": theirs,
        "secret": secret,
        "our_ticket": services.ticket_create(
            customer=customer, subject="Kettle arrived broken", body="Hello", team=ours
        ),
        "their_ticket": services.ticket_create(
            customer=secret, subject="Confidential merger question", body="Hi", team=theirs
        ),
    }


def _decision(ticket: Any) -> Any:
    from routing.testing import routing_decision_create

    return routing_decision_create(
        ticket, category="REFUND", intent="refund", correlation_id=ticket.correlation_id
    )


def test_a_routing_decision_names_only_the_tickets_its_viewer_may_see(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """A staff agent who may read routing decisions (a Django permission) but not open
    tickets in the admin: the ticket of its own team is named as plain text; the decision
    about another team's ticket is not listed and its page answers as a missing one (it
    was shown, with that ticket's number and subject, linked)."""
    viewer = _staff_agent(
        django_user_model, "reader", world["ours"], "routing.view_routingdecision"
    )
    ours, theirs = _decision(world["our_ticket"]), _decision(world["their_ticket"])
    browser = _browser(viewer)
    ticket_admin = "/admin/tickets/ticket/"

    theirs_page = browser.get(f"/admin/routing/routingdecision/{theirs.pk}/change/")
    assert theirs_page.status_code == 302
    assert theirs_page["Location"] == "/admin/"

    ours_page = _page(browser, f"/admin/routing/routingdecision/{ours.pk}/change/")
    assert ticket_admin not in ours_page  # may see it in the workbench, not open its admin page
    assert str(world["our_ticket"]) in ours_page

    listing = _page(browser, "/admin/routing/routingdecision/")
    assert ticket_admin not in listing
    assert world["our_ticket"].number in listing
    assert world["their_ticket"].number not in listing


def test_the_workbench_link_is_shown_only_for_tickets_the_viewer_may_open(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """The workbench link of a ticket's admin page is shown only to whoever the workbench
    page lets in: a staff agent (who opens only its team's tickets in the admin too) and a
    staff user in no role with the Django permission to view tickets (who opens none: the
    admin follows the workbench's rule, under which a person in no role sees nothing)."""
    from tickets.models import Team

    viewer = _staff_agent(django_user_model, "ticket-reader", world["ours"], "tickets.view_ticket")
    ticket = world["our_ticket"]
    workbench = reverse("ticket", kwargs={"ref": ticket.number})
    page = _page(_browser(viewer), f"/admin/tickets/ticket/{ticket.pk}/change/")
    assert f'href="{workbench}"' in page
    assert _browser(viewer).get(workbench).status_code == 200

    roleless = django_user_model.objects.create_user("no-role", password=PASSWORD, is_staff=True)
    Team.objects.get(pk=world["ours"].pk).members.add(roleless)
    roleless.user_permissions.add(Permission.objects.get(codename="view_ticket"))
    no_role = _browser(roleless)
    assert no_role.get(f"/admin/tickets/ticket/{ticket.pk}/change/").status_code == 302
    assert no_role.get(workbench).status_code in (403, 404)


def test_a_call_names_its_customer_only_for_who_may_see_the_customer(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """Customers follow their tickets: an agent of another team, allowed to read calls in
    the admin, does not learn the name of the caller whose only ticket it may not see."""
    from django.utils import timezone

    from calls.models import Call, QueueTeam

    viewer = _staff_agent(django_user_model, "call-reader", world["ours"], "calls.view_call")
    # The call's queue is the viewer's team's (it may see the call), its caller another
    # team's only customer.
    QueueTeam.objects.create(queue_name="Billing", team=world["ours"])
    call = Call.objects.create(
        contact_id="links-1",
        queue_name="Billing",
        channel="VOICE",
        initiated_at=timezone.now(),
        customer=world["secret"],
    )
    page = _page(_browser(viewer), f"/admin/calls/call/{call.pk}/change/")
    assert "Quentin Secret" not in page
    assert "/admin/tickets/customer/" not in page
    assert "(a customer you cannot see)" in page


def test_the_supervisor_role_gets_names_where_its_pages_stop(
    supervisor: Any, agent: Any, world: dict[str, Any]
) -> None:
    """Supervisors open reply drafts and tickets in the admin, not users: the agent who
    asked for a draft is named, not linked to a page that answers the role 403."""
    from knowledge.models import ReplyDraft

    draft = ReplyDraft.objects.create(
        ticket=world["their_ticket"],
        user=agent,
        channel="email",
        provider="local",
        text="Refunds take 5 days.",
        citations=[],
        score=0.8,
        margin=0.2,
    )
    page = _page(_browser(supervisor), f"/admin/knowledge/replydraft/{draft.pk}/change/")
    assert "/admin/auth/user/" not in page
    assert f'<div class="readonly">{agent.username}</div>' in page
    ticket_url = f"/admin/tickets/ticket/{world['their_ticket'].pk}/change/"
    assert f'href="{ticket_url}"' in page  # supervisors see every ticket
    assert _browser(supervisor).get(ticket_url).status_code == 200


def test_a_superuser_keeps_every_link(
    django_user_model: Any, agent: Any, world: dict[str, Any]
) -> None:
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    decision = _decision(world["their_ticket"])
    browser = _browser(root)
    ticket_url = f"/admin/tickets/ticket/{world['their_ticket'].pk}/change/"
    assert f'href="{ticket_url}"' in _page(
        browser, f"/admin/routing/routingdecision/{decision.pk}/change/"
    )
    assert f'href="{ticket_url}"' in _page(browser, "/admin/routing/routingdecision/")
    workbench = reverse("ticket", kwargs={"ref": world["their_ticket"].number})
    assert f'href="{workbench}"' in _page(browser, ticket_url)


def test_nothing_is_linked_outside_an_admin_request(world: dict[str, Any]) -> None:
    """Without a viewer (code running outside an admin view) an object under a visibility
    rule is not named, and nothing is linked."""
    from support.auth.admin import admin_link

    assert admin_link(world["their_ticket"]) == "(a ticket you cannot see)"
    assert admin_link(world["theirs"]) == "Theirs"  # teams have no visibility rule
