"""Deleting a channel identity in the admin is a supervisor's, as changing one is
(``ChannelIdentityAdminForm.clean``, the customer page's inline): an identity decides
whose messages, and replies, are the customer's. Before, a staff agent who was not a
supervisor but held Django's ``delete_channelidentity`` deleted the identity of a
customer it saw (one ticket of its team's), from the identity's page or the list's
"delete selected"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from support.auth.roles import AGENTS_GROUP
from tickets import services
from tickets.models import ChannelIdentity, Customer, Team

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:tickets_channelidentity_changelist"


@pytest.fixture
def identity(db: Any) -> ChannelIdentity:
    team = Team.objects.create(name="Billing", slug="billing")
    ada = Customer.objects.create(name="Ada", email="ada@example.com")
    services.ticket_create(customer=ada, subject="Invoice", body="Hello", team=team)
    return services.channel_identity_link(customer=ada, channel="whatsapp", external_id="+4477")


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_staff_agent_with_the_delete_permission_cannot_delete_an_identity(
    django_user_model: Any, identity: ChannelIdentity
) -> None:
    staff = django_user_model.objects.create_user("staff", password="pw-tests-1", is_staff=True)
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    Team.objects.get(slug="billing").members.add(staff)
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="tickets",
            codename__in=["view_channelidentity", "delete_channelidentity"],
        )
    )
    browser = _browser(staff)
    delete_url = reverse("admin:tickets_channelidentity_delete", args=[identity.pk])
    assert browser.get(reverse(CHANGELIST)).status_code == 200  # it still sees the identity
    assert browser.get(delete_url).status_code == 403
    # refused before the row is looked up: the answer says nothing of which ids exist
    missing = reverse("admin:tickets_channelidentity_delete", args=[identity.pk + 1000])
    assert browser.get(missing).status_code == 403
    assert browser.post(delete_url, {"post": "yes"}).status_code == 403
    browser.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [identity.pk], "post": "yes"},
    )
    assert ChannelIdentity.objects.filter(pk=identity.pk).exists()


def test_a_superuser_still_deletes_an_identity(
    django_user_model: Any, identity: ChannelIdentity
) -> None:
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-tests-1")
    delete_url = reverse("admin:tickets_channelidentity_delete", args=[identity.pk])
    response = _browser(root).post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not ChannelIdentity.objects.filter(pk=identity.pk).exists()
