"""The admin's export and erase actions act on a customer as a whole: every ticket of the
customer goes into the export, and an erasure redacts every ticket's messages, CSAT
answers and interactions. A staff agent (Django permissions, not the supervisor role) may
run them only on customers whose every ticket it may see; seeing one ticket is not seeing
the customer (``tickets.selectors.customers_fully_visible_to``, the rule of a merge of
two customers).

Before, a staff agent of one team with ``view_customer`` exported any customer with one
ticket in its team, the other teams' tickets included (subjects, messages, attachment
names, CSAT comments), and one with ``delete_customer`` erased them.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from support.auth.roles import AGENTS_GROUP
from support.models import AuditLog
from tickets import services
from tickets.context.models import CsatFeedback, CustomerErasure
from tickets.models import Customer, Message, Team

pytestmark = pytest.mark.django_db

URL = "/admin/tickets/customer/"


@pytest.fixture
def world(django_user_model: Any) -> dict[str, Any]:
    """Ada has a ticket in our team and one in theirs; Bo only one in ours."""
    ours = Team.objects.create(name="Ours", slug="ours")
    theirs = Team.objects.create(name="Theirs", slug="theirs")
    ada = Customer.objects.create(name="Ada Split", email="ada@example.com")
    bo = Customer.objects.create(name="Bo Ours", email="bo@example.com")
    services.ticket_create(customer=ada, subject="Ours: kettle", body="Hi", team=ours)
    hidden = services.ticket_create(
        customer=ada, subject="Theirs: legal hold", body="Private matter", team=theirs
    )
    CsatFeedback.objects.create(ticket=hidden, customer=ada, rating=1, comment="Their secret")
    services.ticket_create(customer=bo, subject="Ours: toaster", body="Hello", team=ours)
    staff = django_user_model.objects.create_user(
        "staff-agent", password="pw-for-tests-1", is_staff=True
    )
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    ours.members.add(staff)
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="tickets",
            codename__in=["view_customer", "change_customer", "delete_customer"],
        )
    )
    return {"ada": ada, "bo": bo, "hidden": hidden, "staff": staff}


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _refused(response: Any, what: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    text = html.unescape(response.content.decode())
    assert f"can {what}: some of the selected customers have tickets you cannot see" in text


def test_a_staff_agent_exports_no_customer_it_sees_only_in_part(world: dict[str, Any]) -> None:
    browser = _browser(world["staff"])
    ada, bo = world["ada"], world["bo"]
    for selected in ([ada.pk], [ada.pk, bo.pk]):  # one such customer refuses the whole lot
        response = browser.post(
            URL, {"action": "export_json", "_selected_action": selected}, follow=True
        )
        _refused(response, "export customers' data")
        assert "legal hold" not in response.content.decode()
    assert not AuditLog.objects.filter(action="customer.export").exists()

    # a customer whose every ticket it sees: exported, as before
    response = browser.post(URL, {"action": "export_json", "_selected_action": [bo.pk]})
    assert response.status_code == 200
    assert [t["subject"] for t in json.loads(response.content)["tickets"]] == ["Ours: toaster"]


def test_a_supervisor_exports_the_whole_customer(world: dict[str, Any], supervisor: Any) -> None:
    response = _browser(supervisor).post(
        URL, {"action": "export_json", "_selected_action": [world["ada"].pk]}
    )
    assert response.status_code == 200
    data = json.loads(response.content)
    assert sorted(t["subject"] for t in data["tickets"]) == ["Ours: kettle", "Theirs: legal hold"]
    assert [f["comment"] for f in data["csat_feedback"]] == ["Their secret"]


def test_a_staff_agent_erases_no_customer_it_sees_only_in_part(
    world: dict[str, Any], supervisor: Any
) -> None:
    browser = _browser(world["staff"])
    ada = world["ada"]
    confirm = browser.post(
        URL, {"action": "erase_personal_data", "_selected_action": [ada.pk]}, follow=True
    )
    _refused(confirm, "erase customers' data")  # not even the confirmation page
    assert b"Yes, erase" not in confirm.content
    done = browser.post(
        URL,
        {"action": "erase_personal_data", "_selected_action": [ada.pk], "confirm": "yes"},
        follow=True,
    )
    _refused(done, "erase customers' data")
    assert not CustomerErasure.objects.exists()
    assert not AuditLog.objects.filter(action="customer.erase").exists()
    hidden = world["hidden"]
    assert Message.objects.filter(ticket=hidden, body_text="Private matter").exists()
    assert CsatFeedback.objects.get(ticket=hidden).comment == "Their secret"

    # a supervisor given the delete permission still erases
    supervisor.user_permissions.add(*world["staff"].user_permissions.all())
    done = _browser(supervisor).post(
        URL, {"action": "erase_personal_data", "_selected_action": [ada.pk], "confirm": "yes"}
    )
    assert done.status_code == 302
    assert CustomerErasure.objects.filter(customer=ada).exists()


def test_a_staff_agent_erases_a_customer_it_sees_whole(world: dict[str, Any]) -> None:
    bo = world["bo"]
    done = _browser(world["staff"]).post(
        URL, {"action": "erase_personal_data", "_selected_action": [bo.pk], "confirm": "yes"}
    )
    assert done.status_code == 302
    assert list(CustomerErasure.objects.values_list("customer_id", flat=True)) == [bo.pk]
