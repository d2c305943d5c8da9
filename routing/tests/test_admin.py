from __future__ import annotations

import uuid

import pytest

from routing.models import RoutingDecision
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db


def test_decision_changelist_links_the_ticket(admin_client, customer):
    ticket = ticket_create(customer=customer, subject="Route me", body="?")
    RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.5,
        provider="local",
        correlation_id=uuid.uuid4(),
    )
    response = admin_client.get("/admin/routing/routingdecision/")
    assert response.status_code == 200
    assert f'/admin/tickets/ticket/{ticket.pk}/change/">T-{ticket.pk:06d}</a>' in (
        response.content.decode()
    )


# --- supervisors (the role, without Django permissions): docs/security.md, "Roles" ------


def _staff_agent_who_may_view(user, *codenames):
    """An agent made staff (some sign-in setups make every person staff) and given view
    permissions: the role, not the permission, decides what changes."""
    from django.contrib.auth.models import Permission

    type(user).objects.filter(pk=user.pk).update(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_a_supervisor_routes_failed_tickets_again(
    client, supervisor, agent, customer, monkeypatch, django_capture_on_commit_callbacks
):
    """docs/routing.md ("Never unrouted"): a permanent failure waits in the admin for a
    person to "Route the selected tickets again"; supervisors got 403 on that page."""
    from routing.models import RoutingFailure
    from routing.services import routing_failure_record
    from support.errors import PermanentError
    from support.models import AuditLog

    sent: list[int] = []
    monkeypatch.setattr("routing.tasks.route_ticket_task.delay", sent.append)
    stuck = ticket_create(customer=customer, subject="Route me", body="?")
    failure = routing_failure_record(ticket_id=stuck.pk, exc=PermanentError("bad label"))
    assert failure is not None
    assert failure.permanent
    client.force_login(supervisor)
    assert client.get("/admin/routing/routingfailure/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/routing/routingfailure/",
            {"action": "route_again", "_selected_action": [failure.pk]},
            follow=True,
        )
    assert "1 ticket(s) sent to routing again." in answer.content.decode()
    assert sent == [stuck.pk]
    assert not RoutingFailure.objects.exists()
    entry = AuditLog.objects.get()
    assert (entry.actor, entry.action, entry.object_type, entry.object_id) == (
        supervisor,
        "routing_failure.redrive",
        "tickets.Ticket",
        str(stuck.pk),
    )
    assert entry.details == {"permanent": True, "attempts": 1, "error": "PermanentError: bad label"}

    # A staff agent who may view the page (and the ticket) cannot: the role decides.
    again = routing_failure_record(ticket_id=stuck.pk, exc=PermanentError("bad label"))
    assert again is not None
    client.force_login(_staff_agent_who_may_view(agent, "view_routingfailure"))
    assert client.get("/admin/routing/routingfailure/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/routing/routingfailure/",
            {"action": "route_again", "_selected_action": [again.pk]},
            follow=True,
        )
    assert "Only supervisors can route tickets again." in answer.content.decode()
    assert sent == [stuck.pk]
    assert RoutingFailure.objects.filter(pk=again.pk).exists()
    assert AuditLog.objects.count() == 1


def test_a_supervisor_edits_the_category_map(client, supervisor, agent):
    """The category -> team map is routing configuration, like the queue -> team map
    supervisors already keep (docs/routing.md, ``route_to_team``)."""
    from routing.context import team_map
    from routing.models import CategoryTeam
    from tickets.models import Team

    billing = Team.objects.create(slug="billing", name="Billing")
    care = Team.objects.create(slug="customer-care", name="Customer Care")
    client.force_login(supervisor)
    assert client.get("/admin/routing/categoryteam/add/").status_code == 200
    answer = client.post(
        "/admin/routing/categoryteam/add/", {"category": "REFUND", "team": billing.pk}
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    row = CategoryTeam.objects.get()
    answer = client.post(
        f"/admin/routing/categoryteam/{row.pk}/change/", {"category": "REFUND", "team": care.pk}
    )
    assert answer.status_code == 302
    assert team_map()[0]["REFUND"] == "customer-care"
    # deleting stays with explicit permissions
    assert client.get(f"/admin/routing/categoryteam/{row.pk}/delete/").status_code == 403

    # A staff agent who may view the map cannot change it.
    client.force_login(_staff_agent_who_may_view(agent, "view_categoryteam"))
    assert client.get(f"/admin/routing/categoryteam/{row.pk}/change/").status_code == 200
    answer = client.post(
        f"/admin/routing/categoryteam/{row.pk}/change/", {"category": "REFUND", "team": billing.pk}
    )
    assert answer.status_code == 403
    assert client.get("/admin/routing/categoryteam/add/").status_code == 403
    assert CategoryTeam.objects.get().team == care


def test_the_category_map_takes_only_categories_a_decision_can_carry(client, supervisor):
    """A free-text category saved a row that never matched ("refund" for "REFUND", a
    typo): the form offers the built-in map's and the active router's categories."""
    from routing.models import CategoryTeam, RouterModel
    from tickets.models import Team

    billing = Team.objects.create(slug="billing", name="Billing")
    RouterModel.objects.create(
        name="clinic",
        version=1,
        is_active=True,
        labels=["book_visit", "cancel_visit"],
        label_to_category={"book_visit": "APPOINTMENTS", "cancel_visit": "APPOINTMENTS"},
        features="tfidf",
        artifact=b"",
        artifact_sha256="0" * 64,
    )
    client.force_login(supervisor)
    page = client.get("/admin/routing/categoryteam/add/").content.decode()
    assert '<option value="APPOINTMENTS">' in page  # the active router's
    assert '<option value="REFUND">' in page  # the built-in map's
    for typo in ("refund", "REFUNDS"):
        answer = client.post(
            "/admin/routing/categoryteam/add/", {"category": typo, "team": billing.pk}
        )
        assert answer.status_code == 200  # the form again, saying why
        assert "Select a valid choice" in answer.content.decode()
    assert not CategoryTeam.objects.exists()
    answer = client.post(
        "/admin/routing/categoryteam/add/", {"category": "APPOINTMENTS", "team": billing.pk}
    )
    assert answer.status_code == 302
    # a row saved before under another name is shown as it is, marked, and can be fixed
    old = CategoryTeam.objects.create(category="refund", team=billing)
    page = client.get(f"/admin/routing/categoryteam/{old.pk}/change/").content.decode()
    assert "refund (no router or default category)" in page


def test_a_supervisor_declares_an_outage_and_resolves_it(client, supervisor, agent):
    """Seed 004's service status: a supervisor declares an outage or known issue (the
    status tool then raises matching tickets' priority) and resolves it when it is over.
    The status endpoint's key (``external_id``) is the poll's: not set by hand."""
    from routing.models import Outage, ServiceStatus

    client.force_login(supervisor)
    answer = client.post(
        "/admin/routing/servicestatus/add/",
        {
            "service_id": "SVC123",
            "name": "Payments",
            "keywords": "payment,card",
            "categories": "PAYMENT",
            "state": "outage",
            "outages-TOTAL_FORMS": "1",
            "outages-INITIAL_FORMS": "0",
            "outages-0-title": "Card payments failing",
            "outages-0-started_at_0": "2026-12-06",
            "outages-0-started_at_1": "07:00:00",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    service = ServiceStatus.objects.get()
    assert service.state == "outage"
    assert list(service.outages.values_list("title", "external_id")) == [
        ("Card payments failing", "")
    ]
    answer = client.post(
        "/admin/routing/outage/add/",
        {
            "service": service.pk,
            "title": "Refunds slow",
            "is_known_issue": "on",
            "started_at_0": "2026-12-06",
            "started_at_1": "07:30:00",
            "external_id": "forged-1",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    known = Outage.objects.get(title="Refunds slow")
    assert (known.is_known_issue, known.external_id) == (True, "")
    answer = client.post(
        f"/admin/routing/outage/{known.pk}/change/",
        {
            "service": service.pk,
            "title": "Refunds slow",
            "is_known_issue": "on",
            "started_at_0": "2026-12-06",
            "started_at_1": "07:30:00",
            "resolved_at_0": "2026-12-06",
            "resolved_at_1": "08:00:00",
        },
    )
    assert answer.status_code == 302
    known.refresh_from_db()
    assert known.resolved_at is not None
    assert client.get(f"/admin/routing/outage/{known.pk}/delete/").status_code == 403

    # A staff agent who may view outages cannot declare one.
    client.force_login(_staff_agent_who_may_view(agent, "view_outage", "view_servicestatus"))
    assert client.get("/admin/routing/outage/").status_code == 200
    assert client.get("/admin/routing/outage/add/").status_code == 403
    assert client.get("/admin/routing/servicestatus/add/").status_code == 403
    assert Outage.objects.count() == 2


def test_decisions_and_failures_stay_records_for_supervisors(client, supervisor, customer):
    """A supervisor opens routing decisions and failures (and a ticket's decisions on its
    page) but cannot make or edit one: a decision is what the router did, a failure what
    the task met. Trained router models stay the superusers' (a signed artifact: uploading
    or activating one is an operator's act)."""
    from routing.models import RoutingFailure

    ticket = ticket_create(customer=customer, subject="Route me", body="?")
    decision = RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.5,
        provider="local",
        reasoning="category ORDER",
        correlation_id=uuid.uuid4(),
    )
    failure = RoutingFailure.objects.create(ticket=ticket, permanent=True, error="DataError: x")
    client.force_login(supervisor)
    for model, obj in (("routingdecision", decision), ("routingfailure", failure)):
        assert client.get(f"/admin/routing/{model}/").status_code == 200, model
        page = client.get(f"/admin/routing/{model}/{obj.pk}/change/")
        assert page.status_code == 200, model
        assert 'name="_save"' not in page.content.decode(), model
        assert client.get(f"/admin/routing/{model}/add/").status_code == 403, model
        assert client.get(f"/admin/routing/{model}/{obj.pk}/delete/").status_code == 403, model
    answer = client.post(
        f"/admin/routing/routingdecision/{decision.pk}/change/", {"reasoning": "forged"}
    )
    assert answer.status_code == 403
    decision.refresh_from_db()
    assert decision.reasoning == "category ORDER"
    # the ticket's page shows its decisions to supervisors too
    page = client.get(f"/admin/tickets/ticket/{ticket.pk}/change/").content.decode()
    assert f"/admin/routing/routingdecision/{decision.pk}/change/" in page
    assert client.get("/admin/routing/routermodel/").status_code == 403
