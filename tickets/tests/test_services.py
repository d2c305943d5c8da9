from __future__ import annotations

import pytest

from support.errors import Conflict, InvalidInput, InvalidTransition
from support.models import OutboxEvent
from tickets import services
from tickets.models import Customer, Message, Ticket

pytestmark = pytest.mark.django_db


def _events():
    return list(OutboxEvent.objects.order_by("id").values_list("event_type", flat=True))


LONG_TAG = "refund-requested-for-the-second-order-placed-in-the-spring-sale-x"  # 65


def test_a_tag_over_64_characters_is_refused_naming_it_never_cut(customer, agent):
    """A 65-character tag was stored cut to 64 without a word (a name lower-cased longer,
    such as "İ", too)."""
    assert len(LONG_TAG) == 65
    says = f"tags: {LONG_TAG!r} is 65 characters long; a tag has at most 64 characters."
    with pytest.raises(InvalidInput) as refused:
        services.ticket_create(customer=customer, subject="s", body="b", tags=["ok", LONG_TAG])
    assert (refused.value.message, refused.value.details) == (says, {"tags": [says]})
    assert Ticket.objects.count() == 0
    with pytest.raises(InvalidInput, match="is 80 characters long"):
        services.tag_names_normalise(["\u0130" * 40])  # "İ" lower-cased is two characters
    # the limit counts the name as stored: trimmed and lower case
    assert services.tag_names_normalise([f"  {'A' * 64}  ", "a" * 64, " "]) == ["a" * 64]
    # a pasted paragraph is not echoed whole
    with pytest.raises(InvalidInput) as pasted:
        services.tag_names_normalise(["x" * 5000])
    assert pasted.value.message == (
        f"tags: '{'x' * 64}…' is 5000 characters long; a tag has at most 64 characters."
    )

    ticket = services.ticket_create(customer=customer, subject="s", body="b", tags=["a"])
    OutboxEvent.objects.all().delete()
    with pytest.raises(InvalidInput, match="at most 64"):
        services.ticket_update(ticket=ticket, actor=agent, priority="high", tags=[LONG_TAG])
    ticket.refresh_from_db()
    assert (ticket.priority, [t.name for t in ticket.tags.all()]) == ("normal", ["a"])
    assert _events() == []
    assert not Message.objects.filter(ticket=ticket, kind="system").exists()


def test_ticket_create_writes_ticket_first_message_and_events(customer):
    ticket = services.ticket_create(
        customer=customer,
        subject=" Cannot log in ",
        body="It says my password is wrong",
        channel="email",
        tags=["Login", "login", ""],
    )
    assert ticket.subject == "Cannot log in"
    assert ticket.status == "new"
    assert list(ticket.tags.values_list("name", flat=True)) == ["login"]
    [message] = ticket.messages.all()
    assert (message.direction, message.kind, message.author_customer) == (
        "inbound",
        "public",
        customer,
    )
    assert message.delivery_status == ""
    assert _events() == ["ticket.created", "message.created"]
    created = OutboxEvent.objects.get(event_type="ticket.created")
    assert created.payload["ticket_id"] == ticket.pk
    assert created.payload["source"] == "email"
    assert created.payload["customer_id"] == customer.pk
    assert Ticket.objects.filter(search_vector="password").count() == 1


def test_timeline_entries_read_as_words_not_stored_values(customer, agent):
    """Before: "tags: ['a'] → ['a', 'b']" and "needs review: False → True" (a Python
    list's repr and booleans) on the agents' timeline."""
    ticket = services.ticket_create(customer=customer, subject="s", body="b", tags=["a"])
    services.ticket_update(ticket=ticket, actor=agent, tags=["a", "b"], needs_review=True)
    services.ticket_update(ticket=ticket, actor=agent, tags=[], reason="cleanup")
    notes = Message.objects.filter(ticket=ticket, kind="system").order_by("id")
    assert [n.body_text for n in notes] == [
        "Needs review: no → yes; Tags: a → a, b",
        "Tags: a, b → — (cleanup)",
    ]
    assert notes[0].metadata["changes"] == {
        "needs_review": [False, True],
        "tags": [["a"], ["a", "b"]],
    }


def test_ticket_create_requires_subject(customer):
    with pytest.raises(InvalidInput):
        services.ticket_create(customer=customer, subject="  ")
    assert Ticket.objects.count() == 0
    assert _events() == []


def test_ticket_update_follows_transitions_and_logs_system_entry(customer, agent):
    ticket = services.ticket_create(customer=customer, subject="s", body="b")
    services.ticket_update(ticket=ticket, actor=agent, status="resolved", priority="high")
    ticket.refresh_from_db()
    assert (ticket.status, ticket.priority) == ("resolved", "high")
    assert ticket.resolved_at is not None
    system = Message.objects.get(ticket=ticket, kind="system")
    # the choices' labels, as people read them (the raw values are in the event)
    assert system.body_text == "Status: New → Resolved; Priority: Normal → High"
    assert system.author_user == agent
    updated = OutboxEvent.objects.get(event_type="ticket.updated")
    assert updated.payload["changes"] == {
        "status": ["new", "resolved"],
        "priority": ["normal", "high"],
    }
    services.ticket_update(ticket=ticket, status="closed")
    with pytest.raises(InvalidTransition):
        services.ticket_update(ticket=ticket, status="open")
    ticket.refresh_from_db()
    assert ticket.status == "closed"


def test_ticket_update_without_changes_records_nothing(customer):
    ticket = services.ticket_create(customer=customer, subject="s")
    before = _events()
    services.ticket_update(ticket=ticket, status="new", priority="normal")
    assert _events() == before
    assert not Message.objects.filter(kind="system").exists()


def test_agent_public_reply_is_queued_and_sets_first_response(customer, agent):
    ticket = services.ticket_create(customer=customer, subject="s", body="help")
    reply = services.message_add(ticket=ticket, body="On it", author_user=agent)
    note = services.message_add(ticket=ticket, body="psst", kind="internal_note", author_user=agent)
    ticket.refresh_from_db()
    assert reply.delivery_status == "queued"
    assert note.delivery_status == ""
    assert ticket.status == "open"
    assert ticket.first_response_at is not None
    assert ticket.waiting_since is None


def test_inbound_message_reopens_pending_ticket(customer, agent):
    ticket = services.ticket_create(customer=customer, subject="s", body="help")
    services.ticket_update(ticket=ticket, status="pending")
    message = services.message_add(
        ticket=ticket, body="still broken", direction="inbound", author_customer=customer
    )
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.waiting_since is not None
    # seed 001's event schema, with the ticket as the message left it (reopened)
    event = OutboxEvent.objects.get(event_type="message.created", aggregate_id=str(message.pk))
    assert {k: event.payload[k] for k in ("customer_id", "status", "priority", "source")} == {
        "customer_id": customer.pk,
        "status": "open",
        "priority": ticket.priority,
        "source": ticket.channel,
    }


def test_an_agents_first_reply_event_carries_the_opened_ticket(customer, agent):
    ticket = services.ticket_create(customer=customer, subject="s", body="help", priority="high")
    assert ticket.status == "new"
    reply = services.message_add(ticket=ticket, body="On it.", author_user=agent)
    event = OutboxEvent.objects.get(event_type="message.created", aggregate_id=str(reply.pk))
    assert (event.payload["status"], event.payload["priority"]) == ("open", "high")
    assert event.payload["customer_id"] == customer.pk
    first = OutboxEvent.objects.filter(event_type="message.created").earliest("pk")
    assert (first.payload["status"], first.payload["customer_id"]) == ("new", customer.pk)


def test_duplicate_channel_message_is_a_conflict(customer):
    ticket = services.ticket_create(
        customer=customer, subject="s", channel="whatsapp", body="hi", channel_message_id="wamid.X"
    )
    with pytest.raises(Conflict):
        services.message_add(
            ticket=ticket, body="hi", direction="inbound", channel_message_id="wamid.X"
        )
    assert ticket.messages.count() == 1


def test_delivery_status_never_goes_backwards(customer, agent):
    ticket = services.ticket_create(customer=customer, subject="s", body="b")
    reply = services.message_add(ticket=ticket, body="r", author_user=agent)
    assert services.message_delivery_update(message=reply, status="read") is True
    assert services.message_delivery_update(message=reply, status="delivered") is True
    reply.refresh_from_db()
    assert reply.delivery_status == "read"
    assert reply.delivered_at is not None  # the timestamp is still recorded
    assert services.message_delivery_update(message=reply, status="delivered") is False
    assert services.message_delivery_update(message=reply, status="failed", error="x") is True
    reply.refresh_from_db()
    assert reply.delivery_status == "read"


def test_customer_get_or_create_matches_email_case_insensitively(customer):
    found, created = services.customer_get_or_create(email="ADA@EXAMPLE.COM", name="X")
    assert (found, created) == (customer, False)
    new, created = services.customer_get_or_create(email="grace@example.com", name="Grace")
    assert created is True
    assert new.name == "Grace"


@pytest.mark.django_db
def test_attachment_content_store_saves_once(customer, settings, tmp_path) -> None:
    from tickets.models import Attachment
    from tickets.services import NewAttachment, attachment_content_store, ticket_create

    settings.MEDIA_ROOT = str(tmp_path)
    ticket = ticket_create(
        customer=customer,
        subject="Photo",
        attachments=[NewAttachment(filename="a.jpg", external_media_id="m1", kind="image")],
    )
    attachment = Attachment.objects.get(message__ticket=ticket)
    assert not attachment.file
    stored = attachment_content_store(
        attachment=attachment, content=b"abc", content_type="image/jpeg", filename="b.jpg"
    )
    assert (stored.size, stored.content_type, stored.filename) == (3, "image/jpeg", "b.jpg")
    again = attachment_content_store(attachment=attachment, content=b"other")
    assert again.size == 3
    with again.file.open("rb") as fh:
        assert fh.read() == b"abc"


@pytest.mark.django_db(transaction=True)
def test_ticket_create_redelivery_is_a_conflict_and_leaves_nothing(customer):
    """Outside any transaction (the API's case) the ticket, message and events are one
    multi-statement write: a duplicate channel message id writes none of them."""
    services.ticket_create(
        customer=customer, subject="s", channel="whatsapp", body="hi", channel_message_id="w.1"
    )
    with pytest.raises(Conflict):
        services.ticket_create(
            customer=customer, subject="s", channel="whatsapp", body="hi", channel_message_id="w.1"
        )
    assert Ticket.objects.count() == 1
    assert _events() == ["ticket.created", "message.created"]


def test_ticket_create_conflict_inside_a_transaction_keeps_it_usable(customer):
    from django.db import transaction

    with transaction.atomic():
        services.ticket_create(
            customer=customer, subject="a", channel="whatsapp", body="x", channel_message_id="w.2"
        )
        with pytest.raises(Conflict):
            services.ticket_create(
                customer=customer,
                subject="b",
                channel="whatsapp",
                body="x",
                channel_message_id="w.2",
            )
        services.ticket_create(customer=customer, subject="c", body="still fine")
    assert sorted(Ticket.objects.values_list("subject", flat=True)) == ["a", "c"]


def test_an_agent_may_not_merge_a_teams_ticket_into_one_with_no_team(
    customer, agent, supervisor, teams
):
    """A ticket with no team is every agent's: merging a team's ticket into one moved its
    timeline (internal notes too) there, a move to no team by another door (security
    review 2026-12-06). Supervisors and the system may, as they may move it."""
    billing, shipping = teams
    source = services.ticket_create(customer=customer, subject="s", body="b", team=billing)
    services.message_add(
        ticket=source, body="Billing only", kind="internal_note", author_user=agent
    )
    open_target = services.ticket_create(customer=customer, subject="t", body="c")
    before = list(Message.objects.filter(ticket=source).values_list("pk", flat=True))
    with pytest.raises(InvalidInput) as refused:
        services.ticket_merge(source=source, target=open_target, actor=agent)
    assert refused.value.message == (
        f"{open_target.number} has no team, so merging {source.number} into it would move "
        f"its timeline into a ticket with no team. {services.NO_TEAM_REFUSAL}"
    )
    assert refused.value.details == {"into": ["Supervisors only."]}
    assert Ticket.objects.get(pk=source.pk).merged_into_id is None
    assert list(Message.objects.filter(ticket=source).values_list("pk", flat=True)) == before
    # into another team's ticket is a transfer, which an agent may make; a ticket with no
    # team into one with none widens nothing
    other = services.ticket_create(customer=customer, subject="u", body="d", team=shipping)
    stray = services.ticket_create(customer=customer, subject="v", body="e")
    services.ticket_merge(source=stray, target=open_target, actor=agent)
    assert services.ticket_merge(source=source, target=other, actor=agent) == other
    # a supervisor and the system may
    second = services.ticket_create(customer=customer, subject="w", body="f", team=billing)
    third = services.ticket_create(customer=customer, subject="x", body="g", team=billing)
    services.ticket_merge(source=second, target=open_target, actor=supervisor)
    services.ticket_merge(source=third, target=open_target, actor=None)
    assert set(Ticket.objects.filter(merged_into=open_target).values_list("pk", flat=True)) == {
        stray.pk,
        second.pk,
        third.pk,
    }


def test_customer_get_or_create_by_external_id_finds_or_creates_it():
    """The caller's own customer id (seed 004's ``customer_id``): created once, named after
    it, no email; found again exactly (case-sensitive), never cut."""
    new, created = services.customer_get_or_create_by_external_id(external_id=" CUST-42 ")
    assert created is True
    assert (new.external_id, new.name, new.email) == ("CUST-42", "CUST-42", "")
    assert services.customer_get_or_create_by_external_id(external_id="CUST-42") == (new, False)
    other, created = services.customer_get_or_create_by_external_id(external_id="cust-42")
    assert created is True
    assert other != new
    for bad in ("", " ", "x" * 256, "a\tb"):
        with pytest.raises(InvalidInput):
            services.customer_get_or_create_by_external_id(external_id=bad)
    assert Customer.objects.count() == 2


def test_customer_get_or_create_by_external_id_loses_a_race_to_the_winners_row(monkeypatch):
    """Two first tickets for one new id: the lookup missed in both, the unique index lets
    one insert win, and the other finds that row (within its own transaction, which
    stays usable)."""
    from django.db import transaction

    from tickets.services import customers

    winner = Customer.objects.create(external_id="CUST-R", name="first")
    real = customers.customer_get_by_external_id
    calls: list[str] = []

    def missed_once(external_id: str) -> Customer | None:
        calls.append(external_id)
        return None if len(calls) == 1 else real(external_id)

    monkeypatch.setattr(customers, "customer_get_by_external_id", missed_once)
    with transaction.atomic():
        found = services.customer_get_or_create_by_external_id(external_id="CUST-R")
        assert Customer.objects.count() == 1  # the transaction is still usable
    assert found == (winner, False)
    assert calls == ["CUST-R", "CUST-R"]


def test_a_customer_merge_moves_the_external_id_to_a_target_without_one(customer, supervisor):
    source = Customer.objects.create(external_id="CUST-7")
    services.customer_merge(source=source, target=customer, actor=supervisor, reason="same")
    customer.refresh_from_db()
    assert customer.external_id == "CUST-7"
    assert services.customer_get_or_create_by_external_id(external_id="CUST-7") == (
        customer,
        False,
    )
    # a target with its own keeps it
    again = Customer.objects.create(external_id="CUST-8")
    services.customer_merge(source=again, target=customer, actor=supervisor, reason="same")
    customer.refresh_from_db()
    assert customer.external_id == "CUST-7"
