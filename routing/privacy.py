"""Erasure of what routing keeps about a customer: decisions (entities, reasons, tool
trace), feedback texts kept for training (the ticket's text: the customer's own words
become ``[erased]``), and sync payloads."""

from __future__ import annotations

from routing.models import RoutingDecision, RoutingFeedback, TicketingSync
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
    for feedback in RoutingFeedback.objects.filter(decision__ticket_id__in=subject.ticket_ids):
        feedback.text = subject.redact(feedback.text)
        feedback.note = subject.redact(feedback.note)
        feedback.save(update_fields=["text", "note"])
        changed += 1
    for sync in TicketingSync.objects.filter(decision__ticket_id__in=subject.ticket_ids):
        sync.payload = subject.redact_json(sync.payload)
        sync.save(update_fields=["payload"])
        changed += 1
    return changed
