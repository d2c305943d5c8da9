"""The admin's export and erase actions act on a customer as a whole: every ticket of the
customer goes into the export, and an erasure redacts every ticket's messages, CSAT
answers and interactions. A staff agent (Django permissions, not the supervisor role) may
run them only on customers whose every ticket it may see; seeing one ticket is not seeing
the customer (``tickets.selectors.customers_fully_visible_to``, the rule of a merge of
two customers).

Before, a staff agent of one team with ``view_customer`` exported any customer with one
ticket in its team, the other teams' tickets included (subjects, messages, attachment
names, CSAT comments), and one with ``delete_customer`` erased them.

The same holds for changing a customer or its channel identities (review 2026-12-07,
later): the workbench lets an agent who sees every ticket of a customer change its name
(``customer_contact_update``), and only supervisors its e-mail address, phone number and
identities (whose mail, calls and messages are the customer's). The admin's customer page
is read-only to whoever is not a supervisor, its identities too, and an identity's page
refuses a staff agent's change. Before, a staff agent with ``change_customer`` who saw one
of Ada's tickets gave Ada its own address (the other team's replies went to it, nothing
audited), and one with ``change_channelidentity`` moved Ada's WhatsApp identity to Bo. And
an export holds the interactions the customer context shows its exporter: a call on a
queue of another team's was exported whole to a staff agent who sees every ticket.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.models import Call, QueueTeam, Transcript
from calls.services import call_interaction_record
from support.auth.roles import AGENTS_GROUP
from support.models import AuditLog
from tickets import services
from tickets.context.models import CsatFeedback, CustomerErasure
from tickets.models import ChannelIdentity, Customer, Message, Team

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
    return {"ada": ada, "bo": bo, "hidden": hidden, "staff": staff, "ours": ours, "theirs": theirs}


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _refused(response: Any, what: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    text = html.unescape(response.content.decode())
    assert f"can {what}: some of the selected customers have tickets you cannot see" in text


def _erasure_refused(response: Any) -> None:
    assert response.status_code == 200
    assert "Only supervisors erase a customer" in html.unescape(response.content.decode())


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
    _erasure_refused(confirm)  # not even the confirmation page
    assert b"Yes, erase" not in confirm.content
    done = browser.post(
        URL,
        {"action": "erase_personal_data", "_selected_action": [ada.pk], "confirm": "yes"},
        follow=True,
    )
    _erasure_refused(done)
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


def test_a_staff_agent_erases_no_customer_even_one_it_sees_whole(world: dict[str, Any]) -> None:
    """Erasure reaches the customer's calls on every team's queue (``calls_erase``), which
    no ticket rule covers: a staff agent who saw every ticket of Bo erased Bo's calls on
    another team's queue too (review 2026-12-07). Supervisors only."""
    bo = world["bo"]
    browser = _browser(world["staff"])
    for confirm in ({}, {"confirm": "yes"}):
        done = browser.post(
            URL,
            {"action": "erase_personal_data", "_selected_action": [bo.pk], **confirm},
            follow=True,
        )
        _erasure_refused(done)
        assert b"Yes, erase" not in done.content
    assert not CustomerErasure.objects.exists()


# --- changing a customer and its channel identities ---------------------------------


def _customer_form(customer: Customer, **changes: str) -> dict[str, Any]:
    """The customer page's form as drawn, with ``changes``; its inlines' management
    forms (empty), for whoever is shown them."""
    form: dict[str, Any] = {
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "external_id": customer.external_id,
        "vip_tier": customer.vip_tier,
        "account_type": customer.account_type,
    }
    for prefix in ("identities", "orders"):
        form.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return {**form, **changes}


def _contact(customer: Customer) -> tuple[str, str, str, str]:
    customer.refresh_from_db()
    return (customer.name, customer.email, customer.phone, customer.external_id)


def test_a_staff_agent_changes_no_customer_in_the_admin(
    world: dict[str, Any], supervisor: Any
) -> None:
    """The review's reproduction: seeing one of Ada's tickets, a staff agent with
    ``change_customer`` gave Ada its own address and number (the other team's replies and
    Ada's calls went to them; nothing audited). The page is read-only to it now, for a
    customer it sees whole too (the name is the workbench's contact form's), and says so;
    a supervisor still changes a customer there."""
    ada, bo = world["ada"], world["bo"]
    browser = _browser(world["staff"])
    before = _contact(ada)
    response = browser.post(
        f"{URL}{ada.pk}/change/",
        _customer_form(
            ada, email="attacker@example.com", phone="+1 555 0100", external_id="EVIL-1"
        ),
    )
    assert response.status_code == 403
    assert _contact(ada) == before
    response = browser.post(f"{URL}{bo.pk}/change/", _customer_form(bo, name="Bo Renamed"))
    assert response.status_code == 403
    assert _contact(bo)[0] == "Bo Ours"
    assert not AuditLog.objects.exists()

    page = browser.get(f"{URL}{bo.pk}/change/")
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert 'name="email"' not in text  # nothing to fill in
    assert 'name="name"' not in text
    assert "Only supervisors change a customer here" in text
    assert reverse("customer", kwargs={"customer_id": bo.pk}) in text

    # a supervisor changes the rest here; the contact fields on the workbench's page,
    # checked and audited (saved by this form they were neither)
    browser = _browser(supervisor)
    response = browser.post(
        f"{URL}{ada.pk}/change/",
        _customer_form(ada, email="ada.new@example.com", phone="+1 555 0199", vip_tier="gold"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert _contact(ada) == before
    ada.refresh_from_db()
    assert ada.vip_tier == "gold"
    shown = html.unescape(browser.get(f"{URL}{ada.pk}/change/").content.decode())
    assert 'name="email"' not in shown
    assert 'name="vip_tier"' in shown
    assert "are changed on the customer's page in the workbench" in shown
    response = browser.post(
        reverse("customer-contact", kwargs={"customer_id": ada.pk}),
        {"email": "ada.new@example.com"},
    )
    assert _contact(ada)[1] == "ada.new@example.com"
    assert AuditLog.objects.filter(action="customer.contact_updated").count() == 1


@pytest.fixture
def identity(world: dict[str, Any]) -> ChannelIdentity:
    """Ada's WhatsApp number; the staff agent may also view, add and change identities."""
    world["staff"].user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="tickets",
            codename__in=[
                "view_channelidentity",
                "add_channelidentity",
                "change_channelidentity",
            ],
        )
    )
    return ChannelIdentity.objects.create(
        customer=world["ada"], channel="whatsapp", external_id="+447700900001"
    )


def _identity_form(identity: ChannelIdentity, **changes: Any) -> dict[str, Any]:
    form = {
        "customer": identity.customer_id,
        "channel": identity.channel,
        "external_id": identity.external_id,
        "display_name": identity.display_name,
    }
    return {**form, **changes}


def test_a_staff_agent_moves_or_repoints_no_channel_identity(
    world: dict[str, Any], identity: ChannelIdentity, supervisor: Any
) -> None:
    """The review's reproduction: a staff agent who sees one of Ada's tickets and Bo moved
    Ada's WhatsApp identity (her future messages) to Bo, which the workbench allows only
    in a merge by someone who sees every ticket of both; or pointed it at another number.
    The form refuses it, saying why; a supervisor still moves it (audited)."""
    ada, bo = world["ada"], world["bo"]
    url = reverse("admin:tickets_channelidentity_change", args=[identity.pk])
    browser = _browser(world["staff"])
    for changes in ({"customer": bo.pk}, {"external_id": "+447700900666"}):
        response = browser.post(url, _identity_form(identity, **changes))
        assert response.status_code == 200, changes  # the form again, with the reason
        assert "Only supervisors change a channel identity" in html.unescape(
            response.content.decode()
        )
        identity.refresh_from_db()
        assert (identity.customer_id, identity.external_id) == (ada.pk, "+447700900001")
    assert not AuditLog.objects.exists()

    response = _browser(supervisor).post(url, _identity_form(identity, customer=bo.pk))
    assert response.status_code == 302
    identity.refresh_from_db()
    assert identity.customer_id == bo.pk
    assert AuditLog.objects.get().action == "channel_identity.move"


def test_a_staff_agent_adds_no_channel_identity(
    world: dict[str, Any], identity: ChannelIdentity
) -> None:
    """Adding an identity hands whoever writes from it the customer's record: neither the
    identities' add page nor the customer page's inline offers it to a staff agent (with
    ``add_channelidentity`` and ``change_customer``), and a post adds nothing."""
    ada = world["ada"]
    browser = _browser(world["staff"])
    assert browser.get(reverse("admin:tickets_channelidentity_add")).status_code == 403
    response = browser.post(
        reverse("admin:tickets_channelidentity_add"),
        {"customer": ada.pk, "channel": "whatsapp", "external_id": "+447700900666"},
    )
    assert response.status_code == 403

    page = html.unescape(browser.get(f"{URL}{ada.pk}/change/").content.decode())
    assert "+447700900001" in page  # the identities are shown
    assert "identities-__prefix__" not in page  # no row to add
    form = _customer_form(ada)
    form.update(
        {
            "identities-TOTAL_FORMS": "2",
            "identities-INITIAL_FORMS": "1",
            "identities-0-id": identity.pk,
            "identities-0-customer": ada.pk,
            "identities-0-channel": "whatsapp",
            "identities-0-external_id": "+447700900001",
            "identities-1-customer": ada.pk,
            "identities-1-channel": "whatsapp",
            "identities-1-external_id": "+447700900666",
        }
    )
    assert browser.post(f"{URL}{ada.pk}/change/", form).status_code == 403
    assert list(ChannelIdentity.objects.values_list("external_id", flat=True)) == ["+447700900001"]


# --- the export's interactions ---------------------------------------------------------

CONTACT_OURS, CONTACT_THEIRS = "CONTACT-OURS-1", "CONTACT-THEIRS-1"


def _analysed_call(customer: Customer, *, contact: str, queue: str) -> Call:
    """An analysed call of ``customer``, in the customer context as ``call.analysed``
    puts it (an entry of no ticket, scoped by the call)."""
    call = Call.objects.create(
        contact_id=contact, queue_name=queue, customer=customer, initiated_at=timezone.now()
    )
    Transcript.objects.create(
        call=call,
        source="transcribe",
        text="x",
        segments=[{"speaker": "Customer", "text": "This is awful, I am furious."}],
    )
    assert call_interaction_record(call_id=call.pk) is True
    return call


def test_a_staff_agent_exports_only_the_calls_it_may_see(
    world: dict[str, Any], supervisor: Any
) -> None:
    """The review's reproduction: Bo, whose every ticket the staff agent sees, also called
    a queue of the other team's; the export held that call's entry (its queue, contact id
    and summary), which the customer context and the call page hide from the agent. The
    export holds what the context shows it; a supervisor's holds every call."""
    bo = world["bo"]
    QueueTeam.objects.create(queue_name="Ours queue", team=world["ours"])
    QueueTeam.objects.create(queue_name="Theirs queue", team=world["theirs"])
    _analysed_call(bo, contact=CONTACT_OURS, queue="Ours queue")
    _analysed_call(bo, contact=CONTACT_THEIRS, queue="Theirs queue")

    def exported(user: Any) -> tuple[list[str], str]:
        response = _browser(user).post(URL, {"action": "export_json", "_selected_action": [bo.pk]})
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        data = json.loads(response.content)
        return sorted(i["source_key"] for i in data["interactions"]), response.content.decode()

    keys, text = exported(world["staff"])
    assert keys == [f"call:{CONTACT_OURS}"]
    assert CONTACT_THEIRS not in text
    assert "Theirs queue" not in text
    log = AuditLog.objects.get(action="customer.export", actor=world["staff"])
    assert log.details["interactions"] == 1

    keys, _ = exported(supervisor)
    assert keys == [f"call:{CONTACT_OURS}", f"call:{CONTACT_THEIRS}"]
