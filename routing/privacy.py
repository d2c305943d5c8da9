"""Erasure of what routing keeps about a customer: decisions (entities, reasons, tool
trace), feedback texts kept for training (the ticket's text: the customer's own words
become ``[erased]``), failed routings' errors, and sync payloads."""

from __future__ import annotations

from routing.models import RoutingDecision, RoutingFailure, RoutingFeedback
from routing.services import TICKETING_SYNC_KIND
from support.delivery.models import Attempt
from support.delivery.selectors import deliveries_for_subject
from tickets.context.privacy import ErasureSubject


def routing_erase(subject: ErasureSubject) -> int:
    changed = 0
    for decision in RoutingDecision.objects.filter(ticket_id__in=subject.ticket_ids):
        decision.entities = subject.redact_json(decision.entities)
        decision.reasoning = subject.redact(decision.reasoning)
        decision.reasons = subject.redact_json(decision.reasons)
        decision.review_reasons = subject.redact_json(decision.review_reasons)
        decision.tool_calls = subject.redact_json(decision.tool_calls)
        decision.classification = subject.redact_json(decision.classification)
        decision.fallback_reason = subject.redact(decision.fallback_reason)
        decision.save(
            update_fields=[
                "entities",
                "reasoning",
                "reasons",
                "review_reasons",
                "tool_calls",
                "classification",
                "fallback_reason",
            ]
        )
        changed += 1
    for feedback in RoutingFeedback.objects.filter(ticket_id__in=subject.ticket_ids):
        feedback.text = subject.redact(feedback.text)
        feedback.note = subject.redact(feedback.note)
        feedback.save(update_fields=["text", "note"])
        changed += 1
    for failure in RoutingFailure.objects.filter(ticket_id__in=subject.ticket_ids):
        failure.error = subject.redact(failure.error)
        failure.save(update_fields=["error"])
        changed += 1
    syncs = deliveries_for_subject(
        subject_type="ticket",
        subject_ids=list(subject.ticket_ids),
        target_kind=TICKETING_SYNC_KIND,
    )
    for sync in syncs:
        sync.payload = subject.redact_json(sync.payload)
        sync.last_error = subject.redact(sync.last_error)
        sync.save(update_fields=["payload", "last_error"])
        changed += 1
    for attempt in Attempt.objects.filter(delivery__in=syncs):
        attempt.error = subject.redact(attempt.error)
        attempt.response_summary = subject.redact(attempt.response_summary)
        attempt.save(update_fields=["error", "response_summary"])
    return changed
