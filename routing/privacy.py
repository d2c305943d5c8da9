"""Erasure of what routing keeps about a customer: decisions (entities, reasons, tool
trace), feedback texts kept for training, and sync payloads."""

from __future__ import annotations

from routing.models import RoutingDecision, RoutingFeedback, TicketingSync
from tickets.context.privacy import ErasureSubject, redact_json


def routing_erase(subject: ErasureSubject) -> int:
    changed = 0
    for decision in RoutingDecision.objects.filter(ticket_id__in=subject.ticket_ids):
        decision.entities = redact_json(decision.entities, subject.tokens)
        decision.reasoning = subject.redact(decision.reasoning)
        decision.reasons = redact_json(decision.reasons, subject.tokens)
        decision.review_reasons = redact_json(decision.review_reasons, subject.tokens)
        decision.tool_calls = redact_json(decision.tool_calls, subject.tokens)
        decision.classification = redact_json(decision.classification, subject.tokens)
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
        sync.payload = redact_json(sync.payload, subject.tokens)
        sync.save(update_fields=["payload"])
        changed += 1
    return changed
