"""Writes and side effects of call analytics: intake, the per-call pipeline steps, IVR
escalations, agent states and alerts, Salesforce deliveries.

Every step is idempotent through a natural key (contact id, event id, (call, kind),
delivery key), so at-least-once delivery and re-running a pipeline are safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from calls import ivr
from calls.analytics.providers import get_provider, segment_sentiments
from calls.models import (
    AgentStateEvent,
    AgentStateSpan,
    Alert,
    AlertKind,
    AlertRule,
    AnalyticsPath,
    Call,
    CallAnalytics,
    CallEvent,
    Escalation,
    EventSource,
    EventStatus,
    IVRJourney,
    PipelineStatus,
    SalesforceObject,
    Transcript,
)
from calls.parsers import (
    CallFields,
    Classified,
    ParsedResult,
    RecordError,
    agent_state,
    classify,
    contact_event_fields,
    ctr_fields,
    expand,
    parse_time,
    s3_locations,
)
from calls.s3access import S3LocationRefused, s3_uri_allowed
from calls.salesforce import SalesforceClient
from calls.transcription import get_backend, result_from_s3_object
from support.aws import aws_client, aws_error
from support.delivery.models import Delivery
from support.delivery.registry import Change, DeliveryChange, Schedule, SendResult, TargetKind
from support.delivery.selectors import deliveries_for_subject
from support.delivery.services import delivery_enqueue
from support.errors import InvalidInput, PermanentError, RetryableError
from support.events import event_record
from support.parsing import without_nul
from tickets.context.privacy import customer_redaction_names
from tickets.models import Channel, Customer
from tickets.services import customer_get_or_create, ticket_create

logger = logging.getLogger(__name__)


# --- intake -------------------------------------------------------------------------------


@dataclass
class IntakeResult:
    accepted: list[int] = field(default_factory=list)
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _fingerprint(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _record_failed(*, payload: Any, raw_body: str, error: str, key: str) -> CallEvent:
    event, _ = CallEvent.objects.get_or_create(
        source=EventSource.UNKNOWN,
        external_id=key,
        defaults={
            "payload": payload,
            "raw_body": raw_body,
            "status": EventStatus.FAILED,
            "error": error,
        },
    )
    return event


def call_events_intake(
    *, body: bytes, schedule: bool = True, also_allow_s3: Sequence[str] = ()
) -> IntakeResult:
    """Record every record in ``body`` (raw, unique per source+id) and schedule processing.

    Invalid JSON or a body whose records are all bad raises ``InvalidInput`` after the
    bad input is kept for inspection (``CallEvent`` with status failed and the error).
    A body naming any S3 object outside ``CALLS_ALLOWED_S3_BUCKETS`` (see
    ``calls.s3access``) raises ``S3LocationRefused`` before anything is stored.
    ``also_allow_s3`` adds allow-list entries for this call only (the demo's bundled
    records); HTTP, SNS and SQS intake never pass it.
    """
    try:
        # PostgreSQL text and jsonb cannot hold NUL: kept as U+FFFD (nothing is dropped).
        parsed = without_nul(json.loads(body))
    except ValueError as exc:
        message = f"The body is not valid JSON: {exc}"
        with transaction.atomic():
            _record_failed(
                payload=None,
                raw_body=body.decode("utf-8", "replace").replace("\x00", "\ufffd")[:100_000],
                error=message,
                key=_fingerprint(body),
            )
        raise InvalidInput(message, details={"body": [message]}) from None
    # (index, record, classified or error, fingerprint key of a failed record)
    outcomes: list[tuple[int, Any, Classified | RecordError, str]] = []
    for index, record in enumerate(expand(parsed)):
        if isinstance(record, RecordError):
            outcomes.append((index, parsed, record, _fingerprint({"index": index, "body": parsed})))
            continue
        try:
            outcomes.append((index, record, classify(record), ""))
        except RecordError as exc:
            outcomes.append((index, record, exc, _fingerprint(record)))
    _s3_locations_check(outcomes, also_allow_s3)
    result = IntakeResult()
    with transaction.atomic():
        items: dict[tuple[str, str], Any] = {}
        for index, record, item, failed_key in outcomes:
            if isinstance(item, RecordError):
                error = str(item)
                _record_failed(payload=record, raw_body="", error=error, key=failed_key)
                result.errors.append({"index": index, "error": error})
                continue
            key = (item.source, item.external_id[:255])
            if key in items:
                result.duplicates += 1
                continue
            items[key] = item
        _record_events(items, result)
        if schedule and result.accepted:
            ids = list(result.accepted)
            transaction.on_commit(lambda: _schedule_events(ids))
    if result.errors and not result.accepted and not result.duplicates:
        first = result.errors[0]["error"]
        raise InvalidInput(first, details={"records": result.errors})
    return result


def _s3_locations_check(
    outcomes: list[tuple[int, Any, Classified | RecordError, str]], also_allow: Sequence[str]
) -> None:
    """Refuse the whole body when any record names an S3 object outside the allow-list:
    the worker would read it (or have AWS read it) with its own role."""
    refused = [
        {"index": index, "s3_uri": uri}
        for index, _, item, _ in outcomes
        if not isinstance(item, RecordError)
        for uri in s3_locations(item)
        if not s3_uri_allowed(uri, extra=also_allow)
    ]
    if refused:
        logger.warning("Call events refused: S3 locations outside the allow-list %s", refused)
        first = refused[0]
        raise S3LocationRefused(
            f"Record {first['index']} names {first['s3_uri']}, which is outside "
            "CALLS_ALLOWED_S3_BUCKETS; nothing was stored.",
            details={"records": refused},
        )


def _record_events(items: dict[tuple[str, str], Any], result: IntakeResult) -> None:
    """One SELECT for the known keys, one multi-row INSERT for the new ones."""
    if not items:
        return
    existing = {
        (e.source, e.external_id): e
        for e in CallEvent.objects.filter(
            external_id__in=[k[1] for k in items], source__in={k[0] for k in items}
        ).only("id", "source", "external_id", "status")
    }
    new: list[CallEvent] = []
    for key, item in items.items():
        event = existing.get(key)
        if event is None:
            new.append(
                CallEvent(
                    source=item.source,
                    external_id=key[1],
                    contact_id=item.contact_id[:128],
                    payload=item.payload,
                )
            )
        elif event.status == EventStatus.FAILED:
            # A failed record sent again (e.g. an SQS redelivery) is retried.
            CallEvent.objects.filter(pk=event.pk).update(
                status=EventStatus.RECEIVED, error="", payload=item.payload
            )
            result.accepted.append(event.pk)
        else:
            result.duplicates += 1
    if not new:
        return
    try:
        with transaction.atomic():
            created = CallEvent.objects.bulk_create(new)
        result.accepted.extend(e.pk for e in created)
    except IntegrityError:  # a concurrent request recorded some: one by one
        for event in new:
            obj, was_created = CallEvent.objects.get_or_create(
                source=event.source,
                external_id=event.external_id,
                defaults={"contact_id": event.contact_id, "payload": event.payload},
            )
            if was_created:
                result.accepted.append(obj.pk)
            else:
                result.duplicates += 1


def _schedule_events(ids: list[int]) -> None:
    from calls.tasks import call_event_process_task

    for event_id in ids:
        call_event_process_task.delay(event_id)


def call_event_process(*, event_id: int) -> str:
    """Apply one recorded event; a processed/failed one is left alone (idempotent)."""
    with transaction.atomic():
        event = CallEvent.objects.select_for_update().get(pk=event_id)
        if event.status != EventStatus.RECEIVED:
            return str(event.status)
        payload = event.payload or {}
        try:
            with transaction.atomic():
                status = _apply(event.source, payload)
        except (RecordError, PermanentError, KeyError, TypeError, ValueError) as exc:
            event.status = EventStatus.FAILED
            event.error = f"{type(exc).__name__}: {exc}"
            logger.warning("Call event %s failed: %s", event.pk, event.error)
        else:
            event.status = status
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "processed_at", "updated_at"])
        return str(event.status)


def _apply(source: str, payload: dict[str, Any]) -> str:
    if source == EventSource.CTR:
        call_record_ingest(record=payload)
    elif source == EventSource.CONTACT_EVENT:
        call_upsert(fields=contact_event_fields(payload), fill_only=True)
    elif source == EventSource.AGENT_EVENT:
        agent_event_apply(record=payload)
    elif source == EventSource.RECORDING:
        call_recording_notified(notification=payload)
    elif source == EventSource.TRANSCRIBE:
        job = str(payload["detail"]["TranscriptionJobName"])
        call = Call.objects.filter(transcription_job=job).first()
        if call is None:
            return EventStatus.IGNORED
        call_pipeline_schedule(call)
    elif source == EventSource.S3:
        if not s3_result_created(record=payload):
            return EventStatus.IGNORED
    else:
        return EventStatus.IGNORED
    return EventStatus.PROCESSED


# --- calls ----------------------------------------------------------------------------------


def normalise_phone(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


def customer_for_phone(phone: str) -> Customer | None:
    phone = normalise_phone(phone)
    if not phone:
        return None
    return Customer.objects.filter(phone=phone).order_by("id").first()


def call_upsert(
    *, fields: CallFields, raw: dict[str, Any] | None = None, fill_only: bool = False
) -> Call:
    """Create or update the call for ``fields.contact_id``.

    ``fill_only`` (contact events) only fills empty fields, so a later or earlier contact
    trace record keeps its richer values.
    """
    call, _ = Call.objects.get_or_create(contact_id=fields.contact_id)
    call = Call.objects.select_for_update().get(pk=call.pk)
    changed: list[str] = []
    for name in (
        "channel",
        "initiation_method",
        "initiated_at",
        "connected_to_agent_at",
        "disconnected_at",
        "disconnect_reason",
        "queue_name",
        "agent_username",
        "agent_arn",
        "recording_location",
    ):
        value = getattr(fields, name)
        if value in (None, ""):
            continue
        if fill_only and getattr(call, name) not in (None, ""):
            continue
        if getattr(call, name) != value:
            setattr(call, name, value)
            changed.append(name)
    phone = normalise_phone(fields.customer_phone)
    if phone and call.customer_phone != phone:
        call.customer_phone = phone
        changed.append("customer_phone")
    if call.customer_id is None and call.customer_phone:
        customer = customer_for_phone(call.customer_phone)
        if customer is not None:
            call.customer = customer
            changed.append("customer")
    if fields.attributes:
        call.attributes = {**call.attributes, **fields.attributes}
        changed.append("attributes")
    if raw is not None:
        call.raw = raw
        changed.append("raw")
    if changed:
        call.save(update_fields=[*set(changed), "updated_at"])
    return call


def call_record_ingest(*, record: dict[str, Any]) -> Call:
    """A contact trace record: the call, its IVR journey (and escalation), then the pipeline."""
    call = call_upsert(fields=ctr_fields(record), raw=record)
    call_journey_assess(call=call)
    if (
        call.recording_location
        or call.s3_input_uri
        or settings.CALLS_TRANSCRIPTION_BACKEND == "local"
    ):
        call_pipeline_schedule(call)
    return call


def call_recording_notified(*, notification: dict[str, Any]) -> Call:
    """Seed 003's ``{callId, audioS3Uri, timestamp, metadata}``."""
    call_id = str(notification["callId"])
    call, _ = Call.objects.get_or_create(contact_id=call_id)
    call = Call.objects.select_for_update().get(pk=call.pk)
    call.s3_input_uri = str(notification["audioS3Uri"])
    call.initiated_at = call.initiated_at or parse_time(notification.get("timestamp"))
    metadata = notification.get("metadata") or {}
    if isinstance(metadata, dict) and metadata:
        call.attributes = {**call.attributes, **{str(k): v for k, v in metadata.items()}}
    call.save(update_fields=["s3_input_uri", "initiated_at", "attributes", "updated_at"])
    call_pipeline_schedule(call)
    return call


def s3_result_created(*, record: dict[str, Any]) -> bool:
    """An S3 event for ``{callId}/.../result(s).json`` or ``job_metadata.json``."""
    if "Records" in record:
        s3 = record["Records"][0]["s3"]
        bucket, key = s3["bucket"]["name"], s3["object"]["key"]
    else:
        bucket, key = record["detail"]["bucket"]["name"], record["detail"]["object"]["key"]
    from urllib.parse import unquote_plus

    key = unquote_plus(key)
    name = key.rsplit("/", 1)[-1]
    if name not in ("result.json", "results.json", "job_metadata.json") and not key.startswith(
        "transcripts/"
    ):
        return False
    contact_id = key.split("/", 1)[0]
    if key.startswith("transcripts/"):
        contact_id = name.removesuffix(".json")
    call = Call.objects.select_for_update().filter(contact_id=contact_id).first()
    if call is None:
        return False
    if name == "result.json" and "/standard_output/" in key:
        return False  # follow job_metadata.json instead (it also names the custom output)
    call.s3_output_uri = f"s3://{bucket}/{key}"
    call.save(update_fields=["s3_output_uri", "updated_at"])
    call_pipeline_schedule(call)
    return True


# --- IVR journeys and escalations ------------------------------------------------------------


def call_journey_assess(*, call: Call) -> IVRJourney:
    verdict = ivr.assess(
        call.raw,
        call.attributes,
        reached_agent=call.connected_to_agent_at is not None or bool(call.agent_username),
        queued=bool(call.queue_name),
        disconnect_reason=call.disconnect_reason,
        max_retries=settings.CALLS_IVR_MAX_RETRIES,
    )
    journey, _ = IVRJourney.objects.update_or_create(
        call=call,
        defaults={
            "steps": verdict.steps,
            "outcome": verdict.outcome,
            "failure_kind": verdict.failure_kind,
            "failure_reason": verdict.failure_reason,
        },
    )
    if verdict.failed:
        escalation_create(call=call, kind=verdict.failure_kind, reason=verdict.failure_reason)
    return journey


def _caller(call: Call) -> Customer:
    if call.customer is not None:
        return call.customer
    customer = customer_for_phone(call.customer_phone)
    if customer is None:
        label = call.customer_phone or "unknown number"
        customer, _ = customer_get_or_create(name=f"Caller {label}", phone=call.customer_phone)
    call.customer = customer
    call.save(update_fields=["customer", "updated_at"])
    return customer


def escalation_create(*, call: Call, kind: str, reason: str) -> Escalation:
    """One escalation per (call, failure kind): a phone ticket, an event, a Salesforce Task."""
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(call=call, kind=kind, reason=reason)
    except IntegrityError:
        return Escalation.objects.get(call=call, kind=kind)
    body = (
        f"IVR failure ({kind}) on call {call.contact_id}.\n{reason}\n"
        f"Caller: {call.customer_phone or 'unknown'}. Call page: {call_url(call)}"
    )
    ticket = ticket_create(
        customer=_caller(call),
        subject=f"IVR failure: {kind.replace('_', ' ')} ({call.customer_phone or call.contact_id})",
        body=body,
        channel=Channel.PHONE,
        tags=["ivr-failure", kind],
        origin_platform_id=call.contact_id,
    )
    escalation.ticket = ticket
    escalation.save(update_fields=["ticket", "updated_at"])
    event_record(
        "call.escalated",
        aggregate_type="call",
        aggregate_id=call.pk,
        payload={
            "call_id": call.contact_id,
            "hash": call.hash,
            "kind": kind,
            "reason": reason,
            "ticket_id": ticket.pk,
        },
    )
    if settings.SALESFORCE_ENABLED:
        salesforce_delivery_create(
            key=f"task:{call.contact_id}:{kind}",
            sobject=SalesforceObject.TASK,
            call=call,
            escalation=escalation,
            payload={
                "Subject": f"IVR failure: {kind.replace('_', ' ')}"[:255],
                "Description": body,
                "Priority": "High",
                "Status": "Not Started",
                "CallObject": call.contact_id,
                "CallType": "Inbound",
            },
        )
    return escalation


def call_url(call: Call) -> str:
    return f"{settings.SITE_URL}/calls/{call.hash}/"


# --- pipeline steps ------------------------------------------------------------------------


def call_pipeline_schedule(call: Call) -> None:
    """Run the chain after commit; every step is idempotent, so re-running resumes."""
    from calls.tasks import call_pipeline_start

    call_pk = call.pk
    transaction.on_commit(lambda: call_pipeline_start(call_pk))


def _set_status(call: Call, status: str, error: str = "") -> None:
    Call.objects.filter(pk=call.pk).update(
        pipeline_status=status, pipeline_error=error[:2000], updated_at=timezone.now()
    )


def transcript_save(*, call: Call, result: ParsedResult) -> Transcript:
    """Persist a parsed result; Data Automation's own analytics are persisted with it."""
    labels, overall, score = segment_sentiments(result.segments)
    segments = []
    for seg, label in zip(result.segments, labels, strict=True):
        seg.sentiment = seg.sentiment or label
        segments.append(seg.as_dict())
    text = result.text or " ".join(s.text for s in result.segments)
    with transaction.atomic():
        transcript, _ = Transcript.objects.update_or_create(
            call=call, defaults={"source": result.source, "text": text, "segments": segments}
        )
        if result.source == "data_automation" and (result.summary or result.categories):
            CallAnalytics.objects.update_or_create(
                call=call,
                defaults={
                    "call_summary": result.summary,
                    "call_categories": result.categories,
                    "topics": result.topics,
                    "transcript": text,
                    "audio_summary": result.audio_summary,
                    "topic_summary": result.topic_summary,
                    "content_moderation": result.content_moderation,
                    "sentiment": overall,
                    "sentiment_score": score,
                    "bedrock_status": result.bedrock_status,
                    "produced_by": AnalyticsPath.DATA_AUTOMATION,
                    "provider": "data_automation",
                },
            )
        _set_status(call, PipelineStatus.TRANSCRIBED)
    return transcript


def call_transcribe(*, call_id: int) -> str:
    """Step 1. Answers ``done``, ``pending`` (job running: poll again) or ``waiting``
    (nothing to transcribe yet; an S3/Transcribe event or notification resumes)."""
    call = Call.objects.get(pk=call_id)
    if Transcript.objects.filter(call=call).exists():
        return "done"
    if call.s3_output_uri:
        transcript_save(call=call, result=result_from_s3_object(call.s3_output_uri))
        return "done"
    backend = get_backend()
    if backend.name != "local":
        if not (call.s3_input_uri or call.recording_location):
            _set_status(call, PipelineStatus.AWAITING_RECORDING)
            return "waiting"
        if not call.transcription_job:
            handle = backend.start(call)
            Call.objects.filter(pk=call.pk).update(transcription_job=handle)
            call.transcription_job = handle
            _set_status(call, PipelineStatus.TRANSCRIBING)
    result = backend.fetch(call)
    if result is None:
        if backend.name == "local":
            _set_status(call, PipelineStatus.AWAITING_RECORDING)
            return "waiting"
        return "pending"
    transcript_save(call=call, result=result)
    return "done"


def _set_status_unless_synced(call_id: int, status: str) -> None:
    """Like ``_set_status``, but never moves a call back from ``synced`` (a later step that
    another run of the chain may have finished meanwhile)."""
    Call.objects.filter(pk=call_id).exclude(pipeline_status=PipelineStatus.SYNCED).update(
        pipeline_status=status, pipeline_error="", updated_at=timezone.now()
    )


def call_analyse(*, call_id: int) -> CallAnalytics | None:
    """Step 2: summary, categories, topics through the configured provider.

    The provider (Bedrock: up to a 60 s read timeout) is called with no transaction open:
    read the transcript, call, then write in a short transaction that locks the call and
    re-checks. If the transcript changed meanwhile (an erasure redacted it, or a new result
    replaced it) the answer is stale: nothing is written and the step is retried, so the
    erased words never come back through a summary. If another run stored analytics first,
    theirs stand (one ``call.analysed`` event) and a later status is kept.
    """
    call = Call.objects.get(pk=call_id)
    existing = CallAnalytics.objects.filter(call=call).first()
    if existing is not None:
        _set_status_unless_synced(call.pk, PipelineStatus.ANALYSED)
        return existing
    transcript = Transcript.objects.filter(call=call).first()
    if transcript is None:
        return None
    from calls.parsers import Segment

    segments = [
        Segment(s["speaker"], s["start"], s["end"], s["text"], s.get("sentiment", ""))
        for s in transcript.segments
    ]
    provider = get_provider()
    analysis = provider.analyse(
        text=transcript.text, segments=segments, names=customer_redaction_names(call.customer_id)
    )
    path = AnalyticsPath.LOCAL if provider.name == "local" else AnalyticsPath.TRANSCRIBE_MODEL
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        current = Transcript.objects.filter(call=call).values("text", "segments").first()
        if current != {"text": transcript.text, "segments": transcript.segments}:
            raise RetryableError(f"The transcript of call {call_id} changed during analysis.")
        analytics, created = CallAnalytics.objects.get_or_create(
            call=call,
            defaults={
                "call_summary": analysis.summary,
                "call_categories": analysis.categories,
                "topics": analysis.topics,
                "transcript": transcript.text,
                "sentiment": analysis.sentiment,
                "sentiment_score": analysis.sentiment_score,
                "bedrock_status": analysis.bedrock_status,
                "produced_by": path,
                "provider": provider.name,
            },
        )
        _set_status_unless_synced(call.pk, PipelineStatus.ANALYSED)
        if created:
            event_record(
                "call.analysed",
                aggregate_type="call",
                aggregate_id=call.pk,
                payload={
                    "call_id": call.contact_id,
                    "hash": call.hash,
                    "categories": analytics.call_categories,
                },
            )
    return analytics


def call_salesforce_case(*, call_id: int) -> Delivery | None:
    """Step 3: a Case per analysed call (when Salesforce is configured)."""
    call = Call.objects.select_related("analytics").get(pk=call_id)
    analytics = getattr(call, "analytics", None)
    if analytics is None:
        return None
    if not settings.SALESFORCE_ENABLED:
        return None
    summary = analytics.call_summary or "(no summary)"
    delivery = salesforce_delivery_create(
        key=f"case:{call.contact_id}",
        sobject=SalesforceObject.CASE,
        call=call,
        payload={
            "Subject": f"Phone call {call.customer_phone or call.contact_id}"[:255],
            "Description": (
                f"{summary}\n\nCategories: {', '.join(analytics.call_categories)}\n"
                f"Topics: {', '.join(analytics.topics)}\nTranscript: {call_url(call)}"
            ),
            "Origin": "Phone",
            "Status": "New",
            "Type": (analytics.call_categories or [""])[0][:40],
        },
    )
    return delivery


# --- Salesforce deliveries ------------------------------------------------------------------
#
# A Case per analysed call and a Task per escalation, each a ``support.delivery`` delivery
# of kind ``salesforce`` (idempotency key ``case:<contact>`` / ``task:<contact>:<kind>``).
# The record is upserted by that key in ``SALESFORCE_EXTERNAL_ID_FIELD``, so a retry after
# a timeout that did reach Salesforce updates the same record instead of creating another.

SALESFORCE_KIND = "salesforce"


def salesforce_delivery_create(
    *,
    key: str,
    sobject: str,
    call: Call,
    payload: dict[str, Any],
    escalation: Escalation | None = None,
) -> Delivery:
    """The record's delivery (one per key; sent after commit)."""
    return delivery_enqueue(
        kind=SALESFORCE_KIND,
        idempotency_key=key,
        target_key=urlsplit(settings.SALESFORCE_LOGIN_URL).netloc,
        subject_type="call",
        subject_id=call.pk,
        payload={
            "sobject": sobject,
            "fields": payload,
            "call_id": call.pk,
            "escalation_id": escalation.pk if escalation is not None else None,
        },
    )


def salesforce_deliveries(call: Call) -> Any:
    """The call's Salesforce deliveries (Case, Tasks), newest first."""
    return deliveries_for_subject(
        subject_type="call", subject_ids=[call.pk], target_kind=SALESFORCE_KIND
    ).order_by("-created_at", "-id")


def salesforce_record_send(
    delivery: Delivery, client: SalesforceClient | None = None
) -> SendResult:
    """Upsert one record (the delivery engine calls this with no transaction open)."""
    payload = delivery.payload
    record_id, http_status = (client or SalesforceClient()).upsert(
        str(payload["sobject"]),
        settings.SALESFORCE_EXTERNAL_ID_FIELD,
        delivery.idempotency_key,
        dict(payload.get("fields") or {}),
    )
    return SendResult(
        http_status=http_status,
        external_id=record_id,
        request_summary={
            "sobject": payload["sobject"],
            "external_id_field": settings.SALESFORCE_EXTERNAL_ID_FIELD,
            "external_id": delivery.idempotency_key,
        },
    )


def _salesforce_changed(delivery: Delivery, change: DeliveryChange) -> None:
    if (
        change.event == Change.SUCCEEDED
        and delivery.payload.get("sobject") == SalesforceObject.CASE
    ):
        call = Call.objects.filter(pk=delivery.payload.get("call_id")).first()
        if call is not None:
            _set_status(call, PipelineStatus.SYNCED)


def _salesforce_schedule() -> Schedule:
    return Schedule(max_attempts=int(settings.SALESFORCE_MAX_ATTEMPTS), base=5.0, cap=900.0)


def salesforce_target_kind() -> TargetKind:
    """Registered in ``CallsConfig.ready()``."""
    return TargetKind(
        name=SALESFORCE_KIND,
        label="Salesforce record",
        send=salesforce_record_send,
        schedule=_salesforce_schedule,
        on_change=_salesforce_changed,
        deduplicates=lambda delivery: True,  # upsert by External ID
    )


# --- agent states and alerts ----------------------------------------------------------------


def agent_event_apply(*, record: dict[str, Any]) -> AgentStateEvent | None:
    """Record an agent event, move the agent's span on a state change, check the rules."""
    state = agent_state(record)
    event, created = AgentStateEvent.objects.get_or_create(
        event_id=state.event_id,
        defaults={
            "event_type": state.event_type,
            "agent_arn": state.agent_arn,
            "username": state.username,
            "state": state.state,
            "state_started_at": state.state_started_at,
            "occurred_at": state.occurred_at,
            "raw": record,
        },
    )
    if not created:
        return None
    if state.state and state.state_started_at:
        open_span = (
            AgentStateSpan.objects.select_for_update()
            .filter(agent_arn=state.agent_arn, ended_at__isnull=True)
            .first()
        )
        started = state.state_started_at
        if open_span is None or (
            open_span.state != state.state and started >= open_span.started_at
        ):
            closed = None
            if open_span is not None:
                open_span.ended_at = started
                open_span.save(update_fields=["ended_at", "updated_at"])
                closed = open_span
            AgentStateSpan.objects.get_or_create(
                agent_arn=state.agent_arn,
                state=state.state,
                started_at=started,
                defaults={"username": state.username, "ended_at": None},
            )
            event_record(
                "call.agent_state",
                aggregate_type="agent",
                aggregate_id=state.username or state.agent_arn[-64:],
                payload={
                    "username": state.username,
                    "agent_arn": state.agent_arn,
                    "state": state.state,
                    "since": started.isoformat(),
                    "previous_state": closed.state if closed else "",
                    "previous_seconds": closed.duration_seconds() if closed else None,
                },
            )
            if closed is not None:
                alerts_evaluate(spans=[closed])
    # Judged as of the event's own time: a replayed or late stream must not alert on
    # spans that only look long because the record is old (the beat sweep uses now).
    alerts_evaluate(agent_arn=state.agent_arn, now=state.occurred_at)
    return event


def _in_shift(rule: AlertRule, now: datetime) -> bool:
    if rule.shift_start is None or rule.shift_end is None:
        return True
    local = timezone.localtime(now).time()
    if rule.shift_start <= rule.shift_end:
        return rule.shift_start <= local < rule.shift_end
    return local >= rule.shift_start or local < rule.shift_end


def alerts_evaluate(
    *,
    now: datetime | None = None,
    agent_arn: str | None = None,
    spans: list[AgentStateSpan] | None = None,
) -> list[Alert]:
    """Raise each rule's alert at most once per span (the beat sweep calls this too)."""
    now = now or timezone.now()
    raised: list[Alert] = []
    for rule in AlertRule.objects.filter(enabled=True):
        if rule.kind == AlertKind.STATE_LONGER_THAN:
            state = rule.state
        else:
            state = "Offline"
            if not _in_shift(rule, now):
                continue
        limit = timedelta(minutes=rule.threshold_minutes)
        if spans is not None:
            candidates = [s for s in spans if s.state == state]
        else:
            query = AgentStateSpan.objects.filter(
                state=state, ended_at__isnull=True, started_at__lte=now - limit
            )
            if agent_arn:
                query = query.filter(agent_arn=agent_arn)
            candidates = list(query)
        for span in candidates:
            seconds = span.duration_seconds(now)
            if seconds < limit.total_seconds():
                continue
            alert = alert_raise(rule=rule, span=span, seconds=seconds)
            if alert is not None:
                raised.append(alert)
    return raised


def alert_raise(*, rule: AlertRule, span: AgentStateSpan, seconds: int) -> Alert | None:
    who = span.username or span.agent_arn
    minutes = seconds // 60
    if rule.kind == AlertKind.STATE_LONGER_THAN:
        message = (
            f"{who} has been in {span.state} for {minutes} min (limit {rule.threshold_minutes})."
        )
    else:
        message = f"{who} has been offline during their shift for {minutes} min."
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, span=span, username=span.username, message=message
            )
    except IntegrityError:
        return None
    event_record(
        "call.alert",
        aggregate_type="agent",
        aggregate_id=span.username or span.agent_arn[-64:],
        payload={
            "alert_id": alert.pk,
            "rule": rule.name,
            "username": span.username,
            "state": span.state,
            "minutes": minutes,
            "message": message,
        },
    )
    if rule.notify_sns and settings.CALLS_ALERT_SNS_TOPIC_ARN:
        alert_sns_delivery_create(alert=alert)
    return alert


# An alert published to ``CALLS_ALERT_SNS_TOPIC_ARN`` is a ``support.delivery`` delivery of
# kind ``sns_alert`` (idempotency key ``alert:<id>``): attempts recorded, AWS failures
# classified by ``support.aws`` (throttled and 5xx retried with backoff, refused
# credentials pause the target), dead letters re-driven from the deliveries admin.

SNS_ALERT_KIND = "sns_alert"


def alert_sns_delivery_create(*, alert: Alert) -> Delivery:
    """The alert's SNS delivery (one per alert; sent after commit)."""
    return delivery_enqueue(
        kind=SNS_ALERT_KIND,
        idempotency_key=f"alert:{alert.pk}",
        target_key=str(settings.CALLS_ALERT_SNS_TOPIC_ARN)[:255],
        subject_type="alert",
        subject_id=alert.pk,
        payload={"alert_id": alert.pk, "topic_arn": settings.CALLS_ALERT_SNS_TOPIC_ARN},
    )


def alert_sns_publish(*, alert_id: int, topic_arn: str = "", client: Any = None) -> str:
    """Publish one alert to ``topic_arn`` (default ``CALLS_ALERT_SNS_TOPIC_ARN``);
    failures raise the project's ``RetryableError`` / ``PermanentError`` (``support.aws``)."""
    alert = Alert.objects.select_related("rule").get(pk=alert_id)
    sns = client or aws_client("sns")
    try:
        response = sns.publish(
            TopicArn=topic_arn or settings.CALLS_ALERT_SNS_TOPIC_ARN,
            Subject=f"Agent alert: {alert.rule.name}"[:100],
            Message=json.dumps(
                {"alert_id": alert.pk, "username": alert.username, "message": alert.message}
            ),
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context=f"SNS alert {alert.pk}") from exc
    return str(response["MessageId"])


def alert_sns_send(delivery: Delivery) -> SendResult:
    """The delivery engine's send for ``sns_alert`` (no transaction open)."""
    payload = delivery.payload
    message_id = alert_sns_publish(
        alert_id=int(payload["alert_id"]), topic_arn=str(payload.get("topic_arn") or "")
    )
    return SendResult(
        external_id=message_id,
        request_summary={"alert_id": payload["alert_id"], "topic_arn": payload.get("topic_arn")},
    )


def alert_sns_target_kind() -> TargetKind:
    """Registered in ``CallsConfig.ready()``."""
    return TargetKind(
        name=SNS_ALERT_KIND,
        label="Agent alert to SNS",
        send=alert_sns_send,
        schedule=lambda: Schedule(max_attempts=6, base=2.0, cap=300.0),
    )


def alert_acknowledge(*, alert: Alert) -> Alert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["acknowledged_at", "updated_at"])
    return alert
