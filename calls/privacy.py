"""Erasure of what call analytics keeps about a customer (registered in ``apps.py``).

A call is the customer's when it was matched to them (by phone) or carries one of their
identifiers; the customer's own words in transcripts are removed, identifiers elsewhere
(raw records, attributes, summaries, Salesforce payloads, raw intake events) redacted.
"""

from __future__ import annotations

from django.db.models import Q

from calls.models import Call, CallAnalytics, CallEvent, SalesforceDelivery, Transcript
from tickets.context.privacy import ERASED, ErasureSubject, redact_json


def calls_erase(subject: ErasureSubject) -> int:
    changed = 0
    mentions = Q(customer_id=subject.customer_id)
    for token in subject.tokens:
        mentions |= Q(customer_phone__icontains=token)
    calls = list(Call.objects.filter(mentions))
    for call in calls:
        call.customer_phone = ""
        call.attributes = redact_json(call.attributes, subject.tokens)
        call.raw = redact_json(call.raw, subject.tokens)
        call.save(update_fields=["customer_phone", "attributes", "raw"])
        changed += 1
    call_ids = [call.pk for call in calls]
    for transcript in Transcript.objects.filter(call_id__in=call_ids):
        segments = []
        for segment in transcript.segments:
            if isinstance(segment, dict) and str(segment.get("speaker", "")).lower() == "customer":
                segment = {**segment, "text": ERASED}
            segments.append(redact_json(segment, subject.tokens))
        transcript.segments = segments
        # The full text holds the customer's words too: rebuild it from the segments.
        transcript.text = " ".join(str(s.get("text", "")) for s in segments if isinstance(s, dict))
        transcript.save(update_fields=["segments", "text"])
        changed += 1
    rebuilt = {t.call_id: t.text for t in Transcript.objects.filter(call_id__in=call_ids)}
    for analytics in CallAnalytics.objects.filter(call_id__in=call_ids):
        for field in ("call_summary", "audio_summary", "topic_summary"):
            setattr(analytics, field, subject.redact(getattr(analytics, field)))
        analytics.transcript = subject.redact(rebuilt.get(analytics.call_id, ""))
        analytics.topics = redact_json(analytics.topics, subject.tokens)
        analytics.save(
            update_fields=["call_summary", "transcript", "audio_summary", "topic_summary", "topics"]
        )
        changed += 1
    for delivery in SalesforceDelivery.objects.filter(call_id__in=call_ids):
        delivery.payload = redact_json(delivery.payload, subject.tokens)
        delivery.save(update_fields=["payload"])
        changed += 1
    contact_ids = [call.contact_id for call in calls]
    for event in CallEvent.objects.filter(contact_id__in=contact_ids):
        event.payload = redact_json(event.payload, subject.tokens)
        event.raw_body = subject.redact(event.raw_body)
        event.save(update_fields=["payload", "raw_body"])
        changed += 1
    return changed
