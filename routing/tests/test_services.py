from __future__ import annotations

import importlib
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from routing import classifier, selectors, services
from routing.models import RouterModel, RoutingDecision, RoutingFeedback
from support.models import OutboxEvent
from tickets import services as ticket_services
from tickets.models import Customer, Message, Ticket

pytestmark = pytest.mark.django_db


def _accept_then_override(decision, agent, teams, category, intent):
    """An agent accepts the decision, then overrides it to billing, high, ``category`` and
    ``intent``; returns the accept verdict."""
    accepted = services.routing_decision_accept(decision=decision, actor=agent)
    services.routing_decision_override(
        decision=decision,
        actor=agent,
        team=teams["billing"],
        priority="high",
        category=category,
        intent=intent,
        note=f"a {intent}",
    )
    return accepted


def _ticket(customer, subject, body=""):
    return ticket_services.ticket_create(customer=customer, subject=subject, body=body)


def test_new_ticket_is_routed_after_commit(
    routing_on, teams, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ticket = _ticket(customer, "Cancel order", "I want to cancel my order 123456")
    decision = RoutingDecision.objects.get()
    ticket.refresh_from_db()
    assert decision.ticket_id == ticket.pk
    assert (decision.team_slug, decision.category, decision.intent) == (
        "orders",
        "ORDER",
        "cancel_order",
    )
    assert decision.requires_manual_review is False
    assert decision.out_of_scope is None  # the shipped default has no detector
    assert decision.applied is True
    assert decision.provider == "local"
    assert decision.model_id == "router-model:bitext-default/v1"
    assert len(decision.tool_calls) == 7
    assert decision.sync_status == ""
    assert (decision.expires_at - decision.created_at).days in (89, 90)
    assert (ticket.team.slug, ticket.priority, ticket.needs_review) == ("orders", "normal", False)
    assert decision.correlation_id == ticket.correlation_id
    types = list(OutboxEvent.objects.values_list("event_type", flat=True))
    assert types == ["ticket.created", "message.created", "ticket.updated", "routing.decided"]
    assert RouterModel.objects.get().is_active


def test_a_text_unlike_any_trained_intent_is_recorded_as_such(
    routing_on, teams, customer, monkeypatch
):
    # The shipped default router has no detector (TF-IDF only): give the loaded one a
    # detector that finds every text unlike its intents, as test_providers does.
    router, _ = services.router_active()
    assert router.features == classifier.FEATURES_TFIDF

    def analyse(texts, embeddings=None):
        probs = classifier.softmax(router.decision(texts), router.temperature)
        return probs, np.full(len(texts), 0.02)

    class Detector:
        threshold = 0.3

    monkeypatch.setattr(router, "analyse", analyse)
    monkeypatch.setattr(router, "out_of_scope", Detector())
    ticket = _ticket(customer, "Cancel order", "I want to cancel my order 123456")
    decision = services.routing_decide(ticket_id=ticket.pk)
    assert decision.out_of_scope is True
    assert decision.requires_manual_review is True
    assert decision.review_reasons == ["unlike any trained intent (in-scope score 0.02)"]
    assert decision.classification["classifier"]["out_of_scope"] is True


def test_decisions_stored_before_the_column_are_backfilled(routing_on, teams, customer):
    from django.apps import apps
    from django.db import connection

    backfill = importlib.import_module(
        "routing.migrations.0004_routingdecision_out_of_scope"
    ).backfill
    made = []
    for n, found in enumerate(
        [
            {"out_of_scope": True, "in_scope": 0.1},
            {"out_of_scope": False, "in_scope": 0.9},
            {"out_of_scope": False, "in_scope": None},  # a router without a detector
            {},
        ]
    ):
        ticket = _ticket(customer, f"t{n}")
        made.append(
            RoutingDecision.objects.create(
                ticket=ticket,
                priority="normal",
                confidence=0.9,
                provider="local",
                correlation_id=ticket.correlation_id,
                classification={"category": "ORDER", "classifier": found},
            )
        )
    backfill(apps, connection.schema_editor())
    assert [RoutingDecision.objects.get(pk=d.pk).out_of_scope for d in made] == [
        True,
        False,
        None,
        None,
    ]


def test_routing_is_idempotent_per_attempt_key(routing_on, teams, customer):
    ticket = _ticket(customer, "Refund", "where is my refund?")
    first = services.routing_decide(ticket_id=ticket.pk)
    again = services.routing_decide(ticket_id=ticket.pk)
    assert first.pk == again.pk
    assert RoutingDecision.objects.count() == 1
    other = services.routing_decide(ticket_id=ticket.pk, attempt_key="reroute-1")
    assert other.pk != first.pk
    assert RoutingDecision.objects.count() == 2


def test_low_confidence_waits_for_review_then_override_is_feedback(
    routing_on, teams, customer, agent
):
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    ticket = _ticket(customer, "hello", "hmm, question about stuff")
    decision = services.routing_decide(ticket_id=ticket.pk)
    ticket.refresh_from_db()
    assert decision.requires_manual_review is True
    assert decision.applied is False
    assert (ticket.team, ticket.needs_review) == (None, True)
    assert list(selectors.routing_review_queue()) == [ticket]

    fb = services.routing_decision_override(
        decision=decision,
        actor=agent,
        team=teams["billing"],
        priority="high",
        category="PAYMENT",
        intent="payment_issue",
        note="it is about a charge",
    )
    ticket.refresh_from_db()
    assert (ticket.team.slug, ticket.priority, ticket.needs_review) == ("billing", "high", False)
    assert (fb.verdict, fb.team_correct, fb.priority_correct) == ("overridden", False, False)
    assert fb.text == "hello. hmm, question about stuff"
    assert selectors.routing_accuracy() == {
        "reviewed": 1,
        "overridden": 1,
        "team_accuracy": 0.0,
        "priority_accuracy": 0.0,
    }
    assert selectors.routing_feedback_examples(labels={"payment_issue"}) == [
        ("hello. hmm, question about stuff", "payment_issue")
    ]


def test_a_later_verdict_replaces_the_earlier_one_in_the_training_rows(
    routing_on, teams, customer, agent
):
    """Accepted, then overridden: the next training run learns the correction only (before:
    both rows, one text under two labels)."""
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    ticket = _ticket(customer, "charge", "a charge I do not know on my card")
    decision = services.routing_decide(ticket_id=ticket.pk)
    accepted = _accept_then_override(decision, agent, teams, "PAYMENT", "payment_issue")
    labels = {"payment_issue", accepted.intent or accepted.category} - {""}
    rows = selectors.routing_feedback_examples(labels=labels)
    assert rows == [("charge. a charge I do not know on my card", "payment_issue")]


def test_training_rows_are_redacted_before_a_model_learns_them(routing_on, teams, customer, agent):
    """A model keeps every word it was trained on, out of an erasure's reach: feedback
    texts are redacted (the customer's names, e-mail, phone, card) before training (before:
    trained as stored)."""
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    body = "Ada Lovelace here, ada@example.com, +44 20 7946 0018: a charge on 4111 1111 1111 1111"
    ticket = _ticket(customer, "charge", body)
    decision = services.routing_decide(ticket_id=ticket.pk)
    _accept_then_override(decision, agent, teams, "PAYMENT", "payment_issue")
    ((text, label),) = selectors.routing_feedback_examples(labels={"payment_issue"})
    assert label == "payment_issue"
    for detail in ("Ada", "Lovelace", "ada@example.com", "7946", "4111"):
        assert detail not in text
    assert "a charge on" in text


def test_accept_applies_team_and_counts_as_correct(routing_on, teams, customer, agent):
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    ticket = _ticket(customer, "Invoice", "I need my invoice for March")
    decision = services.routing_decide(ticket_id=ticket.pk)
    services.routing_decision_accept(decision=decision, actor=agent)
    ticket.refresh_from_db()
    assert (ticket.team.slug, ticket.needs_review) == ("billing", False)
    assert RoutingFeedback.objects.get().verdict == "accepted"
    assert selectors.routing_accuracy()["team_accuracy"] == 1.0


def test_the_same_verdict_repeated_by_the_same_person_is_one_verdict(
    routing_on, teams, customer, agent
):
    """A double-click (or a request sent again) answers the first verdict: no second row,
    no second ticket change, no second ticketing sync. Before, each made all three."""
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    decision = services.routing_decide(ticket_id=_ticket(customer, "Invoice", "my invoice").pk)
    first = services.routing_decision_accept(decision=decision, actor=agent)
    events = OutboxEvent.objects.count()
    assert services.routing_decision_accept(decision=decision, actor=agent) == first
    assert list(RoutingFeedback.objects.values_list("pk", flat=True)) == [first.pk]
    assert OutboxEvent.objects.count() == events  # nothing else happened

    override = {"team": teams["orders"], "priority": "high", "category": " ORDER "}
    overridden = services.routing_decision_override(
        decision=decision, actor=agent, note="parcel", **override
    )
    assert (
        services.routing_decision_override(
            decision=decision, actor=agent, note="parcel", **override
        )
        == overridden
    )
    assert list(RoutingFeedback.objects.order_by("pk").values_list("pk", flat=True)) == [
        first.pk,
        overridden.pk,
    ]


def test_a_second_verdict_of_its_own_is_kept_and_applied(
    routing_on, teams, customer, agent, other_agent
):
    """Only a repeat is folded into the first: another person's verdict, another outcome,
    another note, or the same verdict again once the ticket was moved since, is a verdict
    of its own (written, applied, and the latest)."""
    routing_on.ROUTING_REVIEW_THRESHOLD = 0.999
    ticket = _ticket(customer, "Invoice", "my invoice")
    decision = services.routing_decide(ticket_id=ticket.pk)
    written = [
        services.routing_decision_accept(decision=decision, actor=agent),
        services.routing_decision_accept(decision=decision, actor=other_agent),
        services.routing_decision_override(
            decision=decision, actor=agent, team=teams["orders"], priority="high"
        ),
        services.routing_decision_override(
            decision=decision, actor=agent, team=teams["orders"], priority="high", note="why"
        ),
    ]
    ticket_services.ticket_update(ticket=ticket, actor=other_agent, team=teams["accounts"])
    written.append(
        services.routing_decision_override(
            decision=decision, actor=agent, team=teams["orders"], priority="high", note="why"
        )
    )
    assert len({v.pk for v in written}) == 5
    assert list(RoutingFeedback.objects.order_by("pk")) == written
    ticket.refresh_from_db()
    assert (ticket.team.slug, ticket.priority) == ("orders", "high")
    assert selectors.routing_verdicts_latest().get(decision=decision) == written[-1]


def test_vip_billing_goes_to_priority_billing(routing_on, teams):
    vip = Customer.objects.create(name="V", email="v@example.com", vip_tier="gold")
    ticket = _ticket(vip, "Payment", "my payment failed, what payment methods do you accept")
    decision = services.routing_decide(ticket_id=ticket.pk)
    assert decision.team_slug == "priority-billing"
    assert "+20 gold VIP" in decision.reasons


def test_purge_deletes_only_expired(routing_on, teams, customer):
    ticket = _ticket(customer, "Refund", "refund please")
    decision = services.routing_decide(ticket_id=ticket.pk)
    assert services.routing_decision_purge() == 0
    RoutingDecision.objects.filter(pk=decision.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.routing_decision_purge() == 1
    assert RoutingDecision.objects.count() == 0
    assert Ticket.objects.filter(pk=ticket.pk).exists()


def test_purging_a_decision_keeps_its_latest_verdict_as_a_training_row(
    routing_on, teams, customer, agent, supervisor
):
    """The purge deleted a decision's verdicts with it (CASCADE): the agents' accepts and
    overrides, the labels ``train_router --with-feedback`` reads, were lost after 90 days.
    The latest verdict stays, without its decision, with its label and the ticket's text
    (which the erasure still reaches); the decision's own data goes."""
    from routing.context import ticket_text
    from tickets.context import privacy

    ticket = _ticket(customer, "Refund", "Ada Lovelace here, I want a refund for my order")
    decision = services.routing_decide(ticket_id=ticket.pk)
    _accept_then_override(decision, agent, teams, "REFUND", "get_refund")
    kept = RoutingFeedback.objects.latest("id")
    RoutingDecision.objects.filter(pk=decision.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert services.routing_decision_purge() == 1

    assert not RoutingDecision.objects.exists()
    verdict = RoutingFeedback.objects.get()  # the accept it replaced went with the decision
    assert (verdict.pk, verdict.decision_id, verdict.ticket_id) == (kept.pk, None, ticket.pk)
    assert (verdict.verdict, verdict.intent, verdict.category) == (
        "overridden",
        "get_refund",
        "REFUND",
    )
    assert verdict.text == ticket_text(ticket)
    # trained on redacted (the customer's name: routing_feedback_examples)
    assert selectors.routing_feedback_examples(labels={"get_refund"}) == [
        (ticket_text(ticket).replace("Ada Lovelace", "[NAME]"), "get_refund")
    ]
    # a training row, not a current figure: accuracy counts decisions still kept
    assert selectors.routing_accuracy()["reviewed"] == 0
    assert services.routing_decision_purge() == 0
    assert RoutingFeedback.objects.count() == 1

    privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert "Ada" in verdict.text
    verdict.refresh_from_db()
    assert "Ada" not in verdict.text
    assert "refund for my order" not in verdict.text


def test_routing_disabled_does_nothing(
    settings, teams, customer, django_capture_on_commit_callbacks
):
    settings.ROUTING_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        _ticket(customer, "Cancel order", "cancel my order")
    assert RoutingDecision.objects.count() == 0
    assert Message.objects.filter(kind="system").count() == 0


def test_new_model_activation_keeps_previous_for_rollback(routing_on):
    texts = ["cancel my order", "cancel order now", "refund please", "I want a refund"] * 3
    labels = ["cancel", "cancel", "refund", "refund"] * 3
    first, _ = services.router_model_train(
        texts=texts, labels=labels, name="tiny", features="tfidf"
    )
    second, _ = services.router_model_train(
        texts=texts, labels=labels, name="tiny", features="tfidf"
    )
    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert (first.is_active, second.is_active) == (False, True)
    router, row = services.router_active()
    assert row.pk == second.pk
    assert router.labels == ["cancel", "refund"]
    services.router_model_activate(model=first)
    assert services.router_active()[1].pk == first.pk


def test_routing_keeps_a_chosen_team_and_never_lowers_priority(routing_on, teams, customer):
    billing = teams["billing"]
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject="Cancel order",
        body="I want to cancel my order 123456",
        team=billing,
        priority="urgent",
    )
    decision = services.routing_decide(ticket_id=ticket.pk)
    ticket.refresh_from_db()
    assert decision.team_slug == "orders"  # what the router thought, recorded
    assert decision.applied is True
    assert ticket.team is not None
    assert (ticket.team.slug, ticket.priority) == ("billing", "urgent")


def test_routing_runs_with_the_ticket_and_its_correlation_id_in_the_log_context(
    routing_on, teams, customer, monkeypatch
):
    from routing import providers
    from support import logging_context

    ticket = _ticket(customer, "Cancel order", "I want to cancel my order 123456")
    seen: list[dict[str, str]] = []
    decide = providers.decide

    def spy(ctx, provider):
        seen.append(logging_context.current())
        return decide(ctx, provider)

    monkeypatch.setattr(providers, "decide", spy)
    services.routing_decide(ticket_id=ticket.pk)

    assert seen == [{"ticket_id": str(ticket.pk), "correlation_id": str(ticket.correlation_id)}]
    assert logging_context.current() == {}


def test_the_router_reads_at_most_the_first_characters_of_a_long_message(
    routing_on, teams, customer
):
    """A message can be megabytes (a pasted log): routing, its tools, the redaction and a
    model provider read its first ``ROUTED_TEXT_MAX_CHARS``."""
    from routing.classifier import ROUTED_TEXT_MAX_CHARS
    from routing.context import ticket_text

    body = "I want to cancel my order 123456. " + "order-" * 100_000
    ticket = _ticket(customer, "Cancel order", body)
    text = ticket_text(ticket)
    assert len(text) == ROUTED_TEXT_MAX_CHARS
    assert text.startswith("Cancel order. I want to cancel my order 123456.")
    decision = services.routing_decide(ticket_id=ticket.pk)
    assert decision.intent == "cancel_order"
    assert decision.entities["order_numbers"] == ["123456"]


def _ivr_escalation_ticket(customer):
    """A ticket opened by the real IVR path (``calls.services.ivr.escalation_create``):
    subject "IVR failure: …", the explanation a system entry, nothing from the caller."""
    from calls.models import Call
    from calls.services.ivr import escalation_create

    call = Call.objects.create(contact_id="ivr-routing-1", customer=customer, customer_phone="+1")
    escalation = escalation_create(call=call, kind="error_branch", reason="Error at Lookup")
    assert escalation.ticket is not None
    return escalation.ticket


def test_an_ivr_escalation_goes_to_review_with_no_sentiment_from_its_subject(
    routing_on, teams, customer
):
    """The subject "IVR failure: error branch (…)" is the system's words: it was routed
    as the caller's question and scored -0.72 ("very negative sentiment"). Now nothing of
    it is read: no customer text, so a person decides, and nothing scores a mood."""
    from routing.context import ticket_text
    from routing.providers.base import NO_CUSTOMER_TEXT

    ticket = _ivr_escalation_ticket(customer)
    assert ticket.subject.startswith("IVR failure: error branch")
    assert ticket_text(ticket) == ""

    decision = services.routing_decide(ticket_id=ticket.pk)

    assert decision.requires_manual_review is True
    assert decision.review_reasons[0] == NO_CUSTOMER_TEXT
    assert decision.applied is False
    priority = next(c for c in decision.tool_calls if c["name"] == "calculate_priority")
    assert priority["output"]["sentiment"] == 0.0
    assert not any("sentiment" in reason for reason in decision.reasons)
    ticket.refresh_from_db()
    assert (ticket.needs_review, ticket.team_id) == (True, None)


def test_an_ivr_escalation_is_routed_on_the_customers_message_once_one_arrives(
    routing_on, teams, customer
):
    """Only the customer's words: their message, without the system's subject."""
    from routing.context import ticket_text

    ticket = _ivr_escalation_ticket(customer)
    ticket_services.message_add(
        ticket=ticket,
        body="I want to cancel my order 123456",
        direction="inbound",
        author_customer=customer,
    )
    assert ticket_text(ticket) == "I want to cancel my order 123456"

    decision = services.routing_decide(ticket_id=ticket.pk, attempt_key="after-message")

    assert (decision.category, decision.team_slug) == ("ORDER", "orders")
    assert decision.requires_manual_review is False


def test_a_ticket_opened_with_only_a_subject_is_still_routed_on_it(routing_on, teams, customer):
    """A subject-only ticket (an API caller's, an e-mail with no body) is the customer's
    question: routing reads it as before, also after routing wrote its system entries."""
    from routing.context import ticket_text

    ticket = _ticket(customer, "I want to cancel my order 123456")
    services.routing_decide(ticket_id=ticket.pk)
    assert ticket.messages.filter(kind="system").exists()
    assert ticket_text(ticket) == "I want to cancel my order 123456"
