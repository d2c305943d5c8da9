"""The conversation and what customers said about it are records: the admin shows them to
supervisors and superusers and never rewrites or invents them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-12345678")


@pytest.mark.parametrize("who", ["supervisor", "superuser"])
@pytest.mark.parametrize("model", ["message", "attachment", "interaction", "csatfeedback"])
def test_records_cannot_be_added_by_hand(request: Any, who: str, model: str) -> None:
    browser = Client()
    browser.force_login(request.getfixturevalue(who))
    if who == "superuser" or model in ("message", "attachment"):  # supervisors' pages
        assert browser.get(f"/admin/tickets/{model}/").status_code == 200
    assert browser.get(f"/admin/tickets/{model}/add/").status_code == 403


@pytest.mark.parametrize("who", ["supervisor", "superuser"])
def test_what_a_customer_wrote_cannot_be_rewritten(request: Any, who: str, customer: Any) -> None:
    ticket = Ticket.objects.create(subject="Refund", customer=customer, channel="email")
    message = Message.objects.create(
        ticket=ticket,
        direction="inbound",
        author_customer=customer,
        body_text="I was charged twice.",
        channel="email",
    )
    browser = Client()
    browser.force_login(request.getfixturevalue(who))
    page = browser.get(f"/admin/tickets/message/{message.pk}/change/")
    assert page.status_code == 200  # shown, read-only
    browser.post(
        f"/admin/tickets/message/{message.pk}/change/",
        {"ticket": ticket.pk, "direction": "inbound", "body_text": "All fine, thanks.",
         "channel": "email", "kind": "public"},
    )  # fmt: skip
    message.refresh_from_db()
    assert message.body_text == "I was charged twice."


def test_the_sla_event_admin_names_its_fields_once() -> None:
    """The page shows every field of the event (a record: read-only for everyone) and the
    list the same names but the escalation, from one definition."""
    from tickets.admin import SlaEventAdmin
    from tickets.models import SlaEvent

    fields = [f.name for f in SlaEvent._meta.fields if not f.primary_key]
    assert sorted(SlaEventAdmin.readonly_fields) == sorted(fields)
    assert SlaEventAdmin.fields == SlaEventAdmin.readonly_fields
    assert SlaEventAdmin.list_display == tuple(
        name for name in SlaEventAdmin.readonly_fields if name != "escalation"
    )


def test_a_tag_added_in_the_admin_is_stored_as_every_other_way_stores_it(supervisor: Any) -> None:
    """The admin stored "VIP " as typed: a tag the workbench, the API and bulk tagging
    (which trim and lower-case) never find, beside their own "vip"."""
    from tickets.models import Tag

    browser = Client()
    browser.force_login(supervisor)
    response = browser.post("/admin/tickets/tag/add/", {"name": "  VIP Customer "})
    assert response.status_code == 302, response.content[:500]
    assert list(Tag.objects.values_list("name", flat=True)) == ["vip customer"]
    again = browser.post("/admin/tickets/tag/add/", {"name": "VIP customer"})
    assert again.status_code == 200  # the form again: that tag exists
    assert b"already exists" in again.content
    blank = browser.post("/admin/tickets/tag/add/", {"name": "   "})
    assert blank.status_code == 200
    assert Tag.objects.count() == 1
