"""The customer's admin page names the workbench's customer page (where its contact
details are changed) as a link to it, not as a path to copy."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from support.auth.roles import AGENTS_GROUP
from tickets import services
from tickets.models import Customer, Team

pytestmark = pytest.mark.django_db


def _about(user: Any, customer: Customer) -> Any:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("admin:tickets_customer_change", args=[customer.pk]))
    assert response.status_code == 200
    about = BeautifulSoup(response.content, "html.parser").select("p.admin-about")
    assert len(about) == 1
    return about[0]


def test_the_customer_page_links_the_workbench_contact_form(
    supervisor: Any, django_user_model: Any
) -> None:
    team = Team.objects.create(name="Billing", slug="billing")
    ada = Customer.objects.create(name="<b>Ada</b>", email="ada@example.com")
    services.ticket_create(customer=ada, subject="Invoice", body="Hello", team=team)
    staff = django_user_model.objects.create_user("staff", password="pw-tests-1", is_staff=True)
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(staff)
    staff.user_permissions.add(Permission.objects.get(codename="view_customer"))
    url = f"/customers/{ada.pk}/"
    for user, opening in (
        (supervisor, "The name, e-mail address and phone number are changed on"),
        (staff, "Only supervisors change a customer here."),
    ):
        about = _about(user, ada)
        links = about.find_all("a")
        assert [(a["href"], a.get_text()) for a in links] == [(url, url)], user
        text = about.get_text()
        assert text.startswith(opening)
        assert f"workbench ({url}, Edit contact details)" in text
        assert "<" not in text  # nothing escaped twice, nothing unescaped
