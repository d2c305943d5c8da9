"""Erasure of what call analytics keeps about a customer (registered in ``apps.py``).

A call is the customer's when it was matched to them (``customer``), or was matched to no
one and came from their phone number (compared by its digits) while no other live customer
has that number (``ErasureSubject.identifiers`` leaves a shared one out): a household's
landline is also the other customer's, whose calls stay theirs (until 2026-12-07 any call
whose number merely contained one of their identifiers was erased). The customer's own
words in transcripts become ``[erased]``; everywhere else (agent turns, summaries, topics,
raw records, attributes, IVR steps, escalations, Salesforce payloads) their identifiers
and their own words are redacted. The raw intake
events of their calls (and any event holding one of their identifiers) are blanked, like
raw webhook deliveries (``channels_app.privacy``): one not processed yet is closed as
ignored so it is never applied later.
"""

from __future__ import annotations

import dataclasses

from django.db.models import F, Func, Q, QuerySet, Value
from django.utils import timezone

from calls.analytics.providers import split_sentences
from calls.models import (
    Call,
    CallAnalytics,
    CallEvent,
    Escalation,
    EventStatus,
    IVRJourney,
    Transcript,
)
from calls.services import SALESFORCE_KIND
from support.delivery.models import Attempt
from support.delivery.selectors import deliveries_for_subject
from tickets.context.privacy import ERASED, ErasureSubject, own_texts, phone_digits

ERASED_NOTE = "erased: personal data removed at the customer's request"


def _is_customer(segment: object) -> bool:
    return isinstance(segment, dict) and str(segment.get("speaker", "")).lower() == "customer"


def calls_erase(subject: ErasureSubject) -> int:
    changed = 0
    calls = list(_their_calls(subject))
    call_ids = [call.pk for call in calls]
    transcripts = list(Transcript.objects.filter(call_id__in=call_ids))
    # The caller's own words, wherever a summary or a case copied them.
    spoken = [str(s.get("text", "")) for t in transcripts for s in t.segments if _is_customer(s)]
    spoken += [sentence for text in spoken for sentence in split_sentences(text)]
    subject = dataclasses.replace(subject, texts=own_texts([*subject.texts, *spoken]))

    for call in calls:
        call.customer_phone = ""
        call.attributes = subject.redact_json(call.attributes)
        call.raw = subject.redact_json(call.raw)
        call.save(update_fields=["customer_phone", "attributes", "raw"])
        changed += 1
    for transcript in transcripts:
        segments = []
        for segment in transcript.segments:
            if _is_customer(segment):
                segment = {**segment, "text": ERASED}
            segments.append(subject.redact_json(segment))
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
        analytics.topics = subject.redact_json(analytics.topics)
        analytics.save(
            update_fields=["call_summary", "transcript", "audio_summary", "topic_summary", "topics"]
        )
        changed += 1
    for journey in IVRJourney.objects.filter(call_id__in=call_ids):
        journey.steps = subject.redact_json(journey.steps)
        journey.failure_reason = subject.redact(journey.failure_reason)
        journey.save(update_fields=["steps", "failure_reason"])
        changed += 1
    for escalation in Escalation.objects.filter(call_id__in=call_ids):
        escalation.reason = subject.redact(escalation.reason)
        escalation.save(update_fields=["reason"])
        changed += 1
    deliveries = deliveries_for_subject(
        subject_type="call", subject_ids=list(call_ids), target_kind=SALESFORCE_KIND
    )
    for delivery in deliveries:
        delivery.payload = subject.redact_json(delivery.payload)
        delivery.last_error = subject.redact(delivery.last_error)
        delivery.save(update_fields=["payload", "last_error"])
        changed += 1
    for attempt in Attempt.objects.filter(delivery__in=deliveries):
        attempt.error = subject.redact(attempt.error)
        attempt.response_summary = subject.redact(attempt.response_summary)
        attempt.save(update_fields=["error", "response_summary"])
    changed += _events_erase(subject, [call.contact_id for call in calls])
    return changed


def _their_calls(subject: ErasureSubject) -> QuerySet[Call]:
    phones = sorted({d for v in subject.identifiers if (d := phone_digits(v))})
    theirs = Q(customer_id=subject.customer_id)
    if phones:
        theirs |= Q(customer_id__isnull=True, phone_digits__in=phones)
    digits = Func(
        F("customer_phone"), Value(r"\D"), Value(""), Value("g"), function="regexp_replace"
    )
    return Call.objects.annotate(phone_digits=digits).filter(theirs)


def _events_erase(subject: ErasureSubject, contact_ids: list[str]) -> int:
    """Blank the raw events of the person's calls and any naming them by an identifier."""
    theirs = Q(contact_id__in=[c for c in contact_ids if c])
    for token in subject.identifiers:
        theirs |= Q(payload__icontains=token) | Q(raw_body__icontains=token)
    now = timezone.now()
    changed = 0
    for event in CallEvent.objects.filter(theirs):
        event.payload = None
        event.raw_body = ""
        event.error = ERASED_NOTE
        fields = ["payload", "raw_body", "error", "updated_at"]
        if event.status in (EventStatus.RECEIVED, EventStatus.FAILED):
            # Never applied (or re-driven) later: it would bring the data back.
            event.status = EventStatus.IGNORED
            event.processed_at = now
            fields += ["status", "processed_at"]
        event.save(update_fields=fields)
        changed += 1
    return changed
