"""Re-driving failed outbox events from the admin is the supervisors' (as re-driving
outbound deliveries is): a staff agent given the outbox's Django permissions lists the
events about its tickets, and re-drives none. Before, the view permission was enough.

The page is a ``SupervisorAdmin`` one, like the other dead letters' (Outbound deliveries,
Call events, Object events): a supervisor lists and re-drives the events the relay gave up
on without model permissions, and each re-drive is audited. Before 2026-12-07 the page
was a plain ``ModelAdmin``: a supervisor got 403 and did not see it on the admin index,
and a re-drive left no audit-log entry."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from support.auth.admin import SupervisorAdmin
from support.auth.roles import AGENTS_GROUP
from support.models import AuditLog, OutboxEvent
from tickets import services
from tickets.models import Customer, Team

pytestmark = pytest.mark.django_db

URL = "/admin/support/outboxevent/"
PERMISSIONS = ("view_outboxevent", "change_outboxevent")


@pytest.fixture
def team() -> Team:
    return Team.objects.create(name="Ours", slug="ours")


@pytest.fixture
def failed(team: Team) -> OutboxEvent:
    """A dead event about a ticket of our team."""
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    ticket = services.ticket_create(customer=customer, subject="Kettle", body="Hi", team=team)
    return OutboxEvent.objects.create(
        event_type="ticket.updated",
        aggregate_type="ticket",
        aggregate_id=str(ticket.pk),
        failed_at=timezone.now(),
        attempts=5,
    )


def _redrive(user: Any, event: OutboxEvent) -> str:
    client = Client()
    client.force_login(user)
    response = client.post(URL, {"action": "redrive", "_selected_action": [event.pk]}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_a_staff_agent_re_drives_no_event(
    django_user_model: Any, team: Team, failed: OutboxEvent
) -> None:
    staff = django_user_model.objects.create_user(
        "staff-agent", password="pw-for-tests-1", is_staff=True
    )
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(staff)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=PERMISSIONS))
    assert "Only supervisors can re-drive." in _redrive(staff, failed)
    failed.refresh_from_db()
    assert (failed.failed_at is not None, failed.attempts) == (True, 5)


def test_a_supervisor_re_drives(supervisor: Any, failed: OutboxEvent) -> None:
    """No model permission: the supervisor role is enough, as on the other dead letters'
    pages; the re-drive is in the audit log, who and which event."""
    assert not supervisor.user_permissions.exists()
    assert "Re-queued 1 event(s)." in _redrive(supervisor, failed)
    failed.refresh_from_db()
    assert (failed.failed_at, failed.attempts) == (None, 0)
    audit = AuditLog.objects.get()
    assert (audit.actor, audit.action, audit.object_type, audit.object_id) == (
        supervisor,
        "outbox_event.redrive",
        "outbox_event",
        str(failed.pk),
    )
    assert audit.details["event_type"] == "ticket.updated"
    assert audit.details["attempts"] == 5


def test_the_page_is_the_supervisors_and_lists_the_failed_events(
    supervisor: Any, failed: OutboxEvent
) -> None:
    """On the admin index and filtered to the events the relay gave up on ("failed at"
    not empty, the dashboard's link), for a supervisor without model permissions."""
    assert isinstance(admin.site._registry[OutboxEvent], SupervisorAdmin)
    pending = OutboxEvent.objects.create(
        event_type="ticket.updated", aggregate_type="ticket", aggregate_id=failed.aggregate_id
    )
    client = Client()
    client.force_login(supervisor)
    assert URL in client.get("/admin/").content.decode()
    response = client.get(URL, {"failed_at__isempty": "0"})
    assert response.status_code == 200
    assert [event.pk for event in response.context["cl"].result_list] == [failed.pk]
    assert client.get(f"{URL}{pending.pk}/change/").status_code == 200  # read-only
    assert client.get(f"{URL}add/").status_code == 403  # records the system writes
    assert client.post(f"{URL}{pending.pk}/delete/").status_code == 403  # superusers'


def test_a_re_drive_leaves_events_not_failed_alone(supervisor: Any, failed: OutboxEvent) -> None:
    pending = OutboxEvent.objects.create(
        event_type="ticket.updated", aggregate_type="ticket", aggregate_id="1", attempts=3
    )
    delivered = OutboxEvent.objects.create(
        event_type="ticket.updated",
        aggregate_type="ticket",
        aggregate_id="1",
        attempts=1,
        delivered_at=timezone.now(),
    )
    client = Client()
    client.force_login(supervisor)
    response = client.post(
        URL,
        {"action": "redrive", "_selected_action": [failed.pk, pending.pk, delivered.pk]},
        follow=True,
    )
    assert "Re-queued 1 event(s) (2 not failed, left alone)." in response.content.decode()
    pending.refresh_from_db()
    delivered.refresh_from_db()
    assert (pending.attempts, delivered.attempts) == (3, 1)
    assert list(AuditLog.objects.values_list("object_id", flat=True)) == [str(failed.pk)]
