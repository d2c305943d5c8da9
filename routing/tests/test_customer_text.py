"""A ticket the system opened (an IVR failure) is routed again on the customer's first
message when its first decision went to review for want of the customer's words
(``routing.services.routing_customer_text_decide``), through the outbox's
``message.created`` events, unless a person acted on that routing."""

from __future__ import annotations

from typing import Any

import pytest

from routing import selectors, services
from routing.apps import on_messages_created
from routing.models import CUSTOMER_TEXT_ATTEMPT, RoutingDecision
from routing.providers.base import NO_CUSTOMER_TEXT
from support.models import OutboxEvent
from support.services import outbox_relay
from tickets import services as ticket_services
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

WORDS = "I want to cancel my order 123456"


def _ivr_ticket(customer: Any, capture: Any, contact_id: str = "ivr-again-1") -> Ticket:
    """A ticket opened by the real IVR path, routed through the outbox as the product
    routes it: to review, for want of the customer's words."""
    from calls.models import Call
    from calls.services.ivr import escalation_create

    call = Call.objects.create(contact_id=contact_id, customer=customer, customer_phone="+1")
    with capture(execute=True):
        escalation = escalation_create(call=call, kind="error_branch", reason="Error at Lookup")
    assert escalation.ticket is not None
    ticket = escalation.ticket
    (first,) = RoutingDecision.objects.filter(ticket=ticket)
    assert first.attempt_key == "initial"
    assert first.review_reasons[0] == NO_CUSTOMER_TEXT
    ticket.refresh_from_db()
    assert (ticket.needs_review, ticket.team_id) == (True, None)
    return ticket


def _customer_writes(ticket: Ticket, capture: Any, body: str = WORDS, **extra: Any) -> Any:
    """The customer's message threaded into the ticket (as every channel's intake does:
    ``message_add`` inbound), its events relayed."""
    with capture(execute=True):
        return ticket_services.message_add(
            ticket=ticket,
            body=body,
            direction="inbound",
            author_customer=ticket.customer,
            channel="whatsapp",
            **extra,
        )


def _attempts(ticket: Ticket) -> list[str]:
    return list(
        RoutingDecision.objects.filter(ticket=ticket)
        .order_by("created_at", "id")
        .values_list("attempt_key", flat=True)
    )


def test_the_customers_first_message_routes_the_ticket_again_on_their_words(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)

    _customer_writes(ticket, django_capture_on_commit_callbacks)

    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    again = RoutingDecision.objects.get(ticket=ticket, attempt_key=CUSTOMER_TEXT_ATTEMPT)
    assert (again.category, again.intent, again.team_slug) == ("ORDER", "cancel_order", "orders")
    assert again.requires_manual_review is False
    assert again.applied is True
    # the latest decision everything reads: the ticket page's panel, the routing API and
    # the seed API (routing_decision_list's first), the review queue (the ticket's flag)
    assert selectors.routing_decision_latest(ticket=ticket) == again
    assert selectors.routing_decision_list(ticket=ticket)[0] == again
    ticket.refresh_from_db()
    assert (ticket.team_id, ticket.needs_review) == (teams["orders"].pk, False)
    assert ticket not in selectors.routing_review_queue()
    decided = OutboxEvent.objects.filter(event_type="routing.decided").order_by("id")
    assert [e.payload["decision_id"] for e in decided][-1] == again.pk


def test_a_decision_made_again_for_review_is_not_applied(
    routing_on, teams, customer, django_capture_on_commit_callbacks, settings
):
    """The same rule as the first routing: held for review, the team and priority are
    the router's proposal, not set on the ticket."""
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    settings.ROUTING_REVIEW_THRESHOLD = 1.01  # every decision goes to review

    _customer_writes(ticket, django_capture_on_commit_callbacks)

    again = RoutingDecision.objects.get(ticket=ticket, attempt_key=CUSTOMER_TEXT_ATTEMPT)
    assert again.requires_manual_review is True
    assert NO_CUSTOMER_TEXT not in again.review_reasons
    assert again.applied is False
    assert selectors.routing_decision_latest(ticket=ticket) == again
    ticket.refresh_from_db()
    assert (ticket.team_id, ticket.needs_review) == (None, True)


def test_no_second_routing_on_a_second_message(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    _customer_writes(ticket, django_capture_on_commit_callbacks)
    _customer_writes(ticket, django_capture_on_commit_callbacks, body="My card was charged twice")

    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    latest = selectors.routing_decision_latest(ticket=ticket)
    assert latest is not None
    assert latest.intent == "cancel_order"


def test_only_the_customers_first_message_with_words_routes_it_again(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    """A photo sent alone first has nothing to route on: the message with words after it
    is the one the router reads, and it routes the ticket again; a later one does not."""
    from tickets.services import NewAttachment

    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    photo = NewAttachment(filename="bill.png", content_type="image/png", content=b"png")
    _customer_writes(ticket, django_capture_on_commit_callbacks, body="", attachments=[photo])
    assert _attempts(ticket) == ["initial"]

    first_words = _customer_writes(ticket, django_capture_on_commit_callbacks)
    later = _customer_writes(ticket, django_capture_on_commit_callbacks, body="Card charged twice")

    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    assert services.routing_customer_text_refusal(ticket=ticket, message_id=later.pk) == (
        "not the customer's first message with words"
    )
    assert services.routing_customer_text_refusal(ticket=ticket, message_id=first_words.pk) == (
        "already routed again on the customer's words"
    )


@pytest.mark.parametrize("verdict", ["accept", "override"])
def test_no_routing_again_after_a_persons_verdict(
    routing_on, teams, customer, django_capture_on_commit_callbacks, supervisor, verdict
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    decision = RoutingDecision.objects.get(ticket=ticket)
    with django_capture_on_commit_callbacks(execute=True):
        if verdict == "accept":
            decision.team = teams["billing"]  # a decision with no team cannot be accepted
            decision.save(update_fields=["team"])
            services.routing_decision_accept(decision=decision, actor=supervisor)
        else:
            services.routing_decision_override(
                decision=decision, actor=supervisor, team=teams["billing"], priority="high"
            )

    _customer_writes(ticket, django_capture_on_commit_callbacks)

    assert _attempts(ticket) == ["initial"]
    ticket.refresh_from_db()
    assert (ticket.team_id, ticket.needs_review) == (teams["billing"].pk, False)


@pytest.mark.parametrize(
    "change",
    [{"needs_review": False}, {"team": "accounts"}, {"priority": "high"}],
    ids=["review-ended", "team-by-hand", "priority-by-hand"],
)
def test_no_routing_again_after_a_person_acted_on_the_ticket(
    routing_on, teams, customer, django_capture_on_commit_callbacks, supervisor, change
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    fields = {k: teams[v] if k == "team" else v for k, v in change.items()}
    with django_capture_on_commit_callbacks(execute=True):
        ticket_services.ticket_update(ticket=ticket, actor=supervisor, **fields)

    message = _customer_writes(ticket, django_capture_on_commit_callbacks)

    assert _attempts(ticket) == ["initial"]
    ticket.refresh_from_db()
    refusal = services.routing_customer_text_refusal(ticket=ticket, message_id=message.pk)
    assert refusal in (
        "the review was ended",
        "a person changed the ticket's team, priority or review flag",
    )


def test_the_systems_own_changes_do_not_stop_it(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    """An SLA escalation (no actor) raising the priority is not a person's act."""
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        ticket_services.ticket_update(ticket=ticket, priority="high", reason="SLA escalation")

    _customer_writes(ticket, django_capture_on_commit_callbacks)

    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    ticket.refresh_from_db()
    assert ticket.priority == "high"  # never lowered by the router


def test_a_person_acting_while_the_router_works_wins(
    routing_on, teams, customer, django_capture_on_commit_callbacks, supervisor, monkeypatch
):
    """Checked again on the locked ticket before the decision is stored."""
    from routing import providers

    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    message = ticket_services.message_add(
        ticket=ticket, body=WORDS, direction="inbound", author_customer=customer
    )
    decide = providers.decide

    def decide_while_a_person_acts(ctx: Any, provider: Any = None) -> Any:
        ticket_services.ticket_update(ticket=ticket, actor=supervisor, needs_review=False)
        return decide(ctx, provider)

    monkeypatch.setattr(providers, "decide", decide_while_a_person_acts)

    assert services.routing_customer_text_decide(ticket_id=ticket.pk, message_id=message.pk) is None
    assert _attempts(ticket) == ["initial"]


def test_a_message_written_while_the_first_routing_runs_routes_the_ticket_again(
    routing_on, teams, customer, django_capture_on_commit_callbacks, monkeypatch
):
    """The customer's message committed after the first routing read the ticket but
    before its decision was stored: the message.created subscriber found no decision
    awaiting the customer's words and dropped it, and the ticket stayed in review (review
    2026-12-06). The decision now looks for the words in its own transaction (the ticket
    locked) and routes the ticket again on them once it commits."""
    from calls.models import Call
    from calls.services.ivr import escalation_create
    from routing import providers

    routing_on.ROUTING_ENABLED = False  # the first routing runs below, by hand
    call = Call.objects.create(contact_id="ivr-race-1", customer=customer, customer_phone="+1")
    with django_capture_on_commit_callbacks(execute=True):
        ticket = escalation_create(call=call, kind="error_branch", reason="Error at Lookup").ticket
    assert ticket is not None
    assert _attempts(ticket) == []
    routing_on.ROUTING_ENABLED = True
    decide = providers.decide

    def decide_while_the_customer_writes(ctx: Any, provider: Any = None) -> Any:
        monkeypatch.setattr(providers, "decide", decide)  # once: the first routing
        ticket_services.message_add(
            ticket=ticket, body=WORDS, direction="inbound", author_customer=customer
        )
        # the subscriber runs now: no decision awaits the customer's words yet
        assert selectors.tickets_awaiting_customer_text(ticket_ids=[ticket.pk]) == []
        outbox_relay()
        return decide(ctx, provider)

    monkeypatch.setattr(providers, "decide", decide_while_the_customer_writes)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.routing_decide(ticket_id=ticket.pk)

    assert first.review_reasons[0] == NO_CUSTOMER_TEXT
    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    again = RoutingDecision.objects.get(ticket=ticket, attempt_key=CUSTOMER_TEXT_ATTEMPT)
    assert (again.intent, again.team_slug, again.applied) == ("cancel_order", "orders", True)
    ticket.refresh_from_db()
    assert (ticket.team_id, ticket.needs_review) == (teams["orders"].pk, False)


def test_a_duplicate_event_makes_one_decision(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    message = _customer_writes(ticket, django_capture_on_commit_callbacks)
    event = OutboxEvent.objects.get(event_type="message.created", payload__message_id=message.pk)

    # delivered again (at least once): by the subscriber, and by the relay itself
    with django_capture_on_commit_callbacks(execute=True):
        on_messages_created([event, event])
    OutboxEvent.objects.filter(pk=event.pk).update(delivered_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()
    again = services.routing_customer_text_decide(ticket_id=ticket.pk, message_id=message.pk)

    assert _attempts(ticket) == ["initial", CUSTOMER_TEXT_ATTEMPT]
    assert again == RoutingDecision.objects.get(ticket=ticket, attempt_key=CUSTOMER_TEXT_ATTEMPT)
    assert OutboxEvent.objects.filter(event_type="routing.decided").count() == 2


def test_tickets_the_customer_opened_are_not_routed_again(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    """A customer's own ticket was routed on their words: a later message changes
    nothing, whatever its first decision was."""
    with django_capture_on_commit_callbacks(execute=True):
        ticket = ticket_services.ticket_create(customer=customer, subject="Hello", body="Hi")
    _customer_writes(ticket, django_capture_on_commit_callbacks)
    assert _attempts(ticket) == ["initial"]


def test_nothing_is_routed_again_while_routing_is_off(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    routing_on.ROUTING_ENABLED = False
    _customer_writes(ticket, django_capture_on_commit_callbacks)
    assert _attempts(ticket) == ["initial"]


def test_the_panel_shows_the_decision_made_on_the_customers_words(
    routing_on, teams, customer, django_capture_on_commit_callbacks, client, supervisor
):
    from bs4 import BeautifulSoup

    ticket = _ivr_ticket(customer, django_capture_on_commit_callbacks)
    client.force_login(supervisor)

    def panel() -> Any:
        page = client.get(f"/tickets/{ticket.number}/")
        assert page.status_code == 200
        found = BeautifulSoup(page.content, "html.parser").select_one(".routing-panel")
        assert found is not None
        return found

    before = panel()
    assert before.select_one(".routing-again") is None
    assert "no words from the customer" in before.select_one(".warning").get_text()

    _customer_writes(ticket, django_capture_on_commit_callbacks)

    after = panel()
    again = after.select_one(".routing-again")
    assert again is not None
    assert again.get_text().startswith("Routed again on the customer's first message")
    assert after.select_one(".warning") is None  # not held for review
    assert "Orders" in after.get_text()
    assert after.select_one(".routing-labels").get_text() == "Order / Cancel order"
    decision_ids = {i["value"] for i in after.select("input[name=decision_id]")}
    latest = RoutingDecision.objects.get(ticket=ticket, attempt_key=CUSTOMER_TEXT_ATTEMPT)
    assert decision_ids == {str(latest.pk)}
