"""Re-driving failed outbox events from the admin is the supervisors' (as re-driving
outbound deliveries is): a staff agent given the outbox's Django permissions lists the
events about its tickets, and re-drives none. Before, the view permission was enough."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP
from support.models import OutboxEvent
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
    supervisor.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    assert "Re-queued 1 event(s)." in _redrive(supervisor, failed)
    failed.refresh_from_db()
    assert (failed.failed_at, failed.attempts) == (None, 0)
