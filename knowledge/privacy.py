"""Erasure of what the knowledge base keeps about a customer (registered with
``tickets.context.privacy`` in ``apps.py``): agents' feedback on suggestions and reply
drafts (a draft greets the customer by name; outcome and citations stay for the metric).

Feedback on the person's tickets keeps its verdict (helpful or not: the figures the KB
report counts) and loses the person: their identifiers and own words are redacted from
the comment and the stored passage. A comment or draft on any other ticket that holds
one of their identifiers (e-mail, phone, a channel id) is redacted too; a name word alone
selects nothing there (it may be another customer's name: until 2026-12-07 "number" in a
name redacted every comment saying "order number").
"""

from __future__ import annotations

from django.db.models import Q

from knowledge.models import ReplyDraft, SuggestionFeedback
from tickets.context.privacy import ErasureSubject


def knowledge_erase(subject: ErasureSubject) -> int:
    mentions = Q(ticket_id__in=subject.ticket_ids)
    for value in subject.identifiers:
        mentions |= Q(comment__icontains=value) | Q(passage__icontains=value)
    changed = 0
    for feedback in SuggestionFeedback.objects.filter(mentions):
        comment, passage = subject.redact(feedback.comment), subject.redact(feedback.passage)
        if (comment, passage) != (feedback.comment, feedback.passage):
            feedback.comment, feedback.passage = comment, passage
            feedback.save(update_fields=["comment", "passage", "updated_at"])
            changed += 1
    drafts = Q(ticket_id__in=subject.ticket_ids)
    for value in subject.identifiers:
        drafts |= Q(text__icontains=value)
    for draft in ReplyDraft.objects.filter(drafts).only("id", "text"):
        text = subject.redact(draft.text)
        if text != draft.text:
            draft.text = text
            draft.save(update_fields=["text", "updated_at"])
            changed += 1
    return changed
