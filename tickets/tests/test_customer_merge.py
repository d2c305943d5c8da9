"""Moving channel identities between customers (issue #13, Low "Merge"): an agent must
confirm a merge of two customers' tickets (supervisors need not), and every such move is
in the audit log; the customer merge service re-points everything and is audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from support.models import AuditLog
from tickets import services
from tickets.models import ChannelIdentity, Customer, Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_customers(customer: Customer) -> tuple[Ticket, Ticket, Customer]:
    bob = Customer.objects.create(name="Bob", email="bob@example.com")
    services.channel_identity_link(customer=bob, channel="whatsapp", external_id="+4477")
    target = services.ticket_create(customer=customer, subject="Ada's", body="hello")
    source = services.ticket_create(customer=bob, subject="Bob's", body="same issue")
    return source, target, bob


def test_agent_api_merge_of_two_customers_needs_confirmation(
    agent_client: Any,
    agent: Any,
    two_customers: tuple[Ticket, Ticket, Customer],
    customer: Customer,
) -> None:
    source, target, bob = two_customers
    url = f"/api/tickets/{source.number}/merge"
    refused = agent_client.post(url, {"into": target.number}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {
        "confirm_customer_merge": ["Required to merge tickets of two customers."]
    }
    assert Ticket.objects.get(pk=source.pk).merged_into_id is None
    assert ChannelIdentity.objects.get(external_id="+4477").customer == bob
    assert not AuditLog.objects.exists()

    merged = agent_client.post(
        url, {"into": target.number, "confirm_customer_merge": True}, format="json"
    )
    assert merged.status_code == 200
    assert ChannelIdentity.objects.get(external_id="+4477").customer == customer
    [row] = AuditLog.objects.all()
    assert (row.action, row.object_type, row.object_id, row.actor) == (
        "ticket.merge_customers",
        "ticket",
        str(target.pk),
        agent,
    )
    assert row.details == {
        "source_ticket_id": source.pk,
        "target_ticket_id": target.pk,
        "source_customer_id": bob.pk,
        "target_customer_id": customer.pk,
        "moved_identities": 1,
        "confirmed": True,
        "by_supervisor": False,
    }


def test_agent_workbench_merge_of_two_customers_needs_confirmation(
    client: Client, agent: Any, two_customers: tuple[Ticket, Ticket, Customer]
) -> None:
    source, target, bob = two_customers
    client.force_login(agent)
    url = reverse("ticket-merge", kwargs={"ref": source.number})
    refused = client.post(url, {"into": target.number})
    # the ticket page again, the reason in the merge form and the number still in it
    assert refused.status_code == 400
    assert Ticket.objects.get(pk=source.pk).merged_into_id is None
    assert ChannelIdentity.objects.get(external_id="+4477").customer == bob
    page = refused.content.decode()
    assert "belong to different customers" in page
    assert f'pattern="[Tt]?-?[0-9]+" value="{target.number}"' in page  # the number sent
    assert 'name="confirm_customer_merge"' in page
    assert not AuditLog.objects.exists()


def test_supervisor_merges_without_confirmation_and_it_is_audited(
    supervisor_client: Any, two_customers: tuple[Ticket, Ticket, Customer]
) -> None:
    source, target, _ = two_customers
    response = supervisor_client.post(
        f"/api/tickets/{source.number}/merge", {"into": target.number}, format="json"
    )
    assert response.status_code == 200
    [row] = AuditLog.objects.all()
    assert row.action == "ticket.merge_customers"
    assert (row.details["confirmed"], row.details["by_supervisor"]) == (False, True)


def test_same_customer_merge_needs_no_confirmation_and_no_audit(
    agent_client: Any, customer: Customer
) -> None:
    target = services.ticket_create(customer=customer, subject="one", body="a")
    source = services.ticket_create(customer=customer, subject="two", body="b")
    response = agent_client.post(
        f"/api/tickets/{source.number}/merge", {"into": target.number}, format="json"
    )
    assert response.status_code == 200
    assert not AuditLog.objects.exists()


def test_customer_merge_repoints_every_row_and_is_audited(customer: Customer) -> None:
    guest = Customer.objects.create(name="Guest")
    services.channel_identity_link(customer=guest, channel="webchat", external_id="v_1")
    ticket = services.ticket_create(customer=guest, subject="Hi", body="hello", channel="webchat")
    services.message_add(ticket=ticket, body="more", direction="inbound", author_customer=guest)
    result = services.customer_merge(source=guest, target=customer, reason="test")
    assert result == customer
    assert not Customer.objects.filter(pk=guest.pk).exists()
    ticket.refresh_from_db()
    assert ticket.customer == customer
    assert ChannelIdentity.objects.get(external_id="v_1").customer == customer
    assert set(
        Message.objects.filter(ticket=ticket, direction="inbound").values_list(
            "author_customer", flat=True
        )
    ) == {customer.pk}
    note = Message.objects.filter(ticket=ticket, kind="system").latest("id")
    assert note.body_text == "Customer record merged into Ada Lovelace (test)."
    [row] = AuditLog.objects.all()
    assert (row.action, row.object_id) == ("customer.merge", str(customer.pk))
    assert row.details["source_customer_id"] == guest.pk
    assert row.details["tickets"] == [ticket.pk]


def test_moving_an_identity_in_the_admin_is_audited(
    client: Client, supervisor: Any, customer: Customer
) -> None:
    bob = Customer.objects.create(name="Bob", email="bob@example.com")
    identity = services.channel_identity_link(customer=bob, channel="whatsapp", external_id="+4477")
    client.force_login(supervisor)
    url = reverse("admin:tickets_channelidentity_change", args=[identity.pk])
    response = client.post(
        url,
        {
            "customer": customer.pk,
            "channel": "whatsapp",
            "external_id": "+4477",
            "display_name": "",
        },
    )
    assert response.status_code == 302, response.content
    assert ChannelIdentity.objects.get(pk=identity.pk).customer == customer
    [row] = AuditLog.objects.all()
    assert (row.action, row.actor, row.details) == (
        "channel_identity.move",
        supervisor,
        {"channel": "whatsapp", "from_customer_id": bob.pk, "to_customer_id": customer.pk},
    )


def test_an_agent_cannot_merge_away_a_customer_it_sees_only_in_part(
    agent_client: Any,
    agent: Any,
    supervisor: Any,
    two_customers: tuple[Ticket, Ticket, Customer],
    customer: Customer,
) -> None:
    """Naming a customer's address on a new ticket makes that ticket visible, not the
    customer's others: an agent who cannot see all of a customer's tickets may not hand
    its identities (and so its future messages) to another customer, in either direction
    (API and workbench). A supervisor may."""
    from tickets.models import Team

    source, target, bob = two_customers
    elsewhere = Team.objects.create(name="Billing", slug="billing")
    services.ticket_create(customer=bob, subject="Bob's bill", body="hidden", team=elsewhere)
    for src, dst in ((source, target), (target, source)):
        refused = agent_client.post(
            f"/api/tickets/{src.number}/merge",
            {"into": dst.number, "confirm_customer_merge": True},
            format="json",
        )
        assert refused.status_code == 403, refused.content
        assert "ask a supervisor" in refused.json()["error"]["message"]
    page = Client()
    page.force_login(agent)
    form = page.post(
        reverse("ticket-merge", kwargs={"ref": source.number}),
        {"into": target.number, "confirm_customer_merge": "1"},
    )
    assert form.status_code == 403
    assert ChannelIdentity.objects.get(external_id="+4477").customer == bob
    assert not Ticket.objects.filter(merged_into__isnull=False).exists()
    assert not AuditLog.objects.exists()

    # once the agent sees every ticket of both (here: it is in the team), it may
    elsewhere.members.add(agent)
    agent_client.force_authenticate(type(agent).objects.get(pk=agent.pk))  # a new request's user
    merged = agent_client.post(
        f"/api/tickets/{source.number}/merge",
        {"into": target.number, "confirm_customer_merge": True},
        format="json",
    )
    assert merged.status_code == 200
    assert ChannelIdentity.objects.get(external_id="+4477").customer == customer


def test_a_supervisor_merges_customers_whatever_their_teams(
    supervisor_client: Any, two_customers: tuple[Ticket, Ticket, Customer], customer: Customer
) -> None:
    from tickets.models import Team

    source, target, bob = two_customers
    elsewhere = Team.objects.create(name="Billing", slug="billing")
    services.ticket_create(customer=bob, subject="Bob's bill", body="hidden", team=elsewhere)
    merged = supervisor_client.post(
        f"/api/tickets/{source.number}/merge", {"into": target.number}, format="json"
    )
    assert merged.status_code == 200
    assert ChannelIdentity.objects.get(external_id="+4477").customer == customer
