"""Call events in: recorded once (by a natural key), then applied to call records;
the call record itself (``call_upsert`` and the three ways a call arrives)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, transaction
from django.utils import timezone

from calls.models import (
    Call,
    CallEvent,
    EventSource,
    EventStatus,
)
from calls.parsers import (
    CallFields,
    Classified,
    RecordError,
    classify,
    contact_event_fields,
    contact_id_text,
    ctr_fields,
    expand,
    is_firehose_delivery,
    is_s3_test_event,
    parse_time,
    s3_locations,
)
from calls.s3access import S3LocationRefused, s3_uri_allowed
from calls.selectors import customer_for_phone
from calls.services.agents import agent_event_apply
from calls.services.ivr import call_journey_assess
from calls.services.pipeline import call_pipeline_schedule
from support.errors import InvalidInput, PermanentError
from support.parsing import json_loads, normalise_phone, without_nul
from support.services import audit_log_record

logger = logging.getLogger(__name__)


# --- intake -------------------------------------------------------------------------------


@dataclass
class IntakeResult:
    accepted: list[int] = field(default_factory=list)
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Duplicates of events recorded before and still ``received``: their processing may
    #: have died (a redelivery is how SQS retries), so they are processed again.
    pending: list[int] = field(default_factory=list)

    def to_process(self) -> list[int]:
        return [*self.accepted, *self.pending]


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
    A record naming an S3 object outside ``CALLS_ALLOWED_S3_BUCKETS`` (see
    ``calls.s3access``) is one such bad record: kept as failed with the reason, under its
    own source and id (sent again once allowed, or re-driven, it is applied), and never
    applied meanwhile, so nothing of it is read; the other records are accepted. When
    every bad record of an all-bad body is such a one, ``S3LocationRefused``.
    ``also_allow_s3`` adds allow-list entries for this call only (the demo's bundled
    records); HTTP, SNS and SQS intake never pass it.
    """
    try:
        # PostgreSQL text and jsonb cannot hold NUL: kept as U+FFFD (nothing is dropped).
        parsed = without_nul(json_loads(body))
    except ValueError as exc:
        message = str(exc)
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
    # A record of a Firehose delivery that cannot be decoded is keyed by the delivery's
    # requestId (the same on every retry of it; the envelope's timestamp may not be), so a
    # redelivery keeps it once.
    basis = {"firehose": str(parsed["requestId"])} if is_firehose_delivery(parsed) else parsed
    for index, record in enumerate(expand(parsed)):
        if isinstance(record, RecordError):
            outcomes.append((index, parsed, record, _fingerprint({"index": index, "body": basis})))
            continue
        # Records decoded from the body (Kinesis data, an SNS Message) may hold NULs too.
        record = cast("dict[str, Any]", without_nul(record))
        try:
            outcomes.append((index, record, classify(record), ""))
        except RecordError as exc:
            outcomes.append((index, record, exc, _fingerprint(record)))
    refusals = _s3_refusals(outcomes, also_allow_s3)
    result = IntakeResult()
    with transaction.atomic():
        items: dict[tuple[str, str], Any] = {}
        for index, record, item, failed_key in outcomes:
            if isinstance(item, RecordError):
                error = str(item)
                _record_failed(payload=record, raw_body="", error=error, key=failed_key)
                result.errors.append({"index": index, "error": error})
                continue
            if index in refusals:
                _record_refused(item, refusals[index])
                result.errors.append({"index": index, "error": refusals[index]})
                continue
            key = (item.source, item.external_id[:255])
            if key in items:
                result.duplicates += 1
                continue
            items[key] = item
        _record_events(items, result)
        if schedule and result.to_process():
            _schedule_events_on_commit(result.to_process())
    if result.errors and not result.accepted and not result.duplicates:
        first = result.errors[0]["error"]
        refused_only = len(refusals) == len(result.errors)
        error_class = S3LocationRefused if refused_only else InvalidInput
        raise error_class(first, details={"records": result.errors})
    return result


def _s3_refusals(
    outcomes: list[tuple[int, Any, Classified | RecordError, str]], also_allow: Sequence[str]
) -> dict[int, str]:
    """The error of each record (by index) that names an S3 object outside the
    allow-list: the worker would read it (or have AWS read it) with its own role, so it
    is kept as failed and never applied."""
    refusals = {}
    for index, _, item, _ in outcomes:
        if isinstance(item, RecordError):
            continue
        refused = [uri for uri in s3_locations(item) if not s3_uri_allowed(uri, extra=also_allow)]
        if refused:
            refusals[index] = (
                f"Record {index} names {', '.join(refused)}, which is outside "
                "CALLS_ALLOWED_S3_BUCKETS: kept as failed, not read."
            )
    if refusals:
        logger.warning("Call events refused: S3 locations outside the allow-list %s", refusals)
    return refusals


def _record_refused(item: Classified, error: str) -> None:
    """Keep a record the intake refused (``_s3_refusals``) as failed under its own source
    and id, so that the same record sent again once it is allowed is retried
    (``_record_events``), and a supervisor can re-drive it. One already recorded is left
    as it is (the worker checks the allow-list again before any read)."""
    CallEvent.objects.get_or_create(
        source=item.source,
        external_id=item.external_id[:255],
        defaults={
            "contact_id": item.contact_id[:128],
            "payload": item.payload,
            "status": EventStatus.FAILED,
            "error": error,
        },
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
            if event.status == EventStatus.RECEIVED:
                result.pending.append(event.pk)
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


def _schedule_events_on_commit(ids: list[int]) -> None:
    """Queue the events' processing once the transaction commits. Robust: the events are
    committed by then, so a broker refusing the task (down, unreachable) is logged, not
    raised to the sender (a 5xx for records that were saved: sent again, and by Firehose
    to its backup) or the supervisor; the events sweep (``call_events_sweep``) queues
    what is still ``received``."""
    from calls.tasks import call_event_process_task

    def schedule_call_events() -> None:  # named: on_commit logs a failure by __qualname__
        for event_id in ids:
            call_event_process_task.delay(event_id)

    transaction.on_commit(schedule_call_events, robust=True)


def call_event_redrive(*, event: CallEvent, actor: Any) -> bool:
    """A supervisor applies a failed record again (once what made it fail is fixed: a
    release, a queue mapping, the data): it is ``received`` again and processed after the
    commit, like a redelivery from the sender. The audit log says who. False when it had
    not failed (processed, or re-driven meanwhile)."""
    settled = _failed_event_settle(
        event,
        actor,
        "call_event.redrive",
        status=EventStatus.RECEIVED,
        error="",
        processed_at=None,
        # The sweep's re-drives start again, after its wait.
        attempts=0,
        attempted_at=timezone.now(),
    )
    if settled:
        _schedule_events_on_commit([event.pk])
    return settled


def call_event_close(*, event: CallEvent, actor: Any) -> bool:
    """A supervisor decides a failed record will not be applied (a test record, a contact
    recorded some other way): ``closed`` (not ``ignored``, which is a record this app has
    no use for), the raw event retention purges it in time, and the audit log says who.
    False when it had not failed."""
    note = f"Closed unapplied by a supervisor ({actor.get_username()}); was: {event.error}"
    return _failed_event_settle(
        event,
        actor,
        "call_event.close",
        status=EventStatus.CLOSED,
        error=note[:5000],
        processed_at=timezone.now(),
    )


def _failed_event_settle(event: CallEvent, actor: Any, action: str, **fields: Any) -> bool:
    """``fields`` on ``event`` if it is still failed (one conditional update: two
    supervisors at once, the first counts), audit-logged as ``action``."""
    with transaction.atomic():
        updated = CallEvent.objects.filter(pk=event.pk, status=EventStatus.FAILED).update(
            **fields, updated_at=timezone.now()
        )
        if updated:
            audit_log_record(
                actor=actor,
                action=action,
                object_type="calls.CallEvent",
                object_id=event.pk,
                details={"source": event.source, "error": event.error[:500]},
            )
    return bool(updated)


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
        except (RecordError, PermanentError, KeyError, TypeError, ValueError, DataError) as exc:
            # DataError: a value the database refused (too long, out of range). The
            # savepoint above rolled it back; the event is kept as failed, never left
            # "received" (a redelivery would count it a duplicate and the call be lost).
            event.status = EventStatus.FAILED
            event.error = f"{type(exc).__name__}: {exc}"
            logger.warning("Call event %s failed: %s", event.pk, event.error)
        else:
            event.status = status
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "processed_at", "updated_at"])
        return str(event.status)


def call_event_attempt_failed(*, event_id: int, exc: BaseException) -> None:
    """Note on an event still ``received`` why its processing just failed with an error
    ``call_event_process`` does not record (a bug, a time limit): the sweep queues it
    again, and gives this as the reason if it gives up. Best effort (the database may be
    what failed)."""
    try:
        CallEvent.objects.filter(pk=event_id, status=EventStatus.RECEIVED).update(
            error=f"last try: {type(exc).__name__}: {exc}"[:2000]
        )
    except (DatabaseError, InterfaceError):
        logger.warning("Could not note the failure of call event %s", event_id)


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


def call_upsert(
    *, fields: CallFields, raw: dict[str, Any] | None = None, fill_only: bool = False
) -> Call:
    """Create or update the call for ``fields.contact_id``.

    ``fill_only`` (contact events) only fills empty fields, so a later or earlier contact
    trace record keeps its richer values. A contact trace record (``raw``) older than the
    one already applied (``LastUpdateTimestamp``: the streams do not keep order) is
    applied the same way, and the newer ``raw`` is kept.
    """
    call, _ = Call.objects.get_or_create(contact_id=fields.contact_id)
    call = Call.objects.select_for_update().get(pk=call.pk)
    if raw is not None and _ctr_older(raw, than=call.raw):
        logger.info("Older contact trace record for %s only fills gaps", call.contact_id)
        fill_only, raw = True, None
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
    if phone and call.customer_phone != phone and not (fill_only and call.customer_phone):
        call.customer_phone = phone
        changed.append("customer_phone")
    if call.customer_id is None and call.customer_phone:
        customer = customer_for_phone(call.customer_phone)
        if customer is not None:
            call.customer = customer
            changed.append("customer")
    if fields.attributes:
        if fill_only:
            call.attributes = {**fields.attributes, **call.attributes}
        else:
            call.attributes = {**call.attributes, **fields.attributes}
        changed.append("attributes")
    if raw is not None:
        call.raw = raw
        changed.append("raw")
    if changed:
        call.save(update_fields=[*set(changed), "updated_at"])
    return call


def _ctr_older(record: dict[str, Any], *, than: dict[str, Any] | None) -> bool:
    """Whether ``record`` was last updated before the record ``than`` (both contact
    trace records); False when either has no readable ``LastUpdateTimestamp``."""
    if not than:
        return False
    try:
        mine = parse_time(record.get("LastUpdateTimestamp"))
        theirs = parse_time(than.get("LastUpdateTimestamp"))
    except RecordError:
        return False
    return mine is not None and theirs is not None and mine < theirs


def call_record_ingest(*, record: dict[str, Any]) -> Call:
    """A contact trace record: the call, its IVR journey (and escalation), then the pipeline."""
    call = call_upsert(fields=ctr_fields(record), raw=record)
    call_journey_assess(call=call)
    if (
        call.recording_location
        or call.s3_input_uri
        or call.s3_output_uri  # a result that arrived before this record
        or settings.CALLS_TRANSCRIPTION_BACKEND == "local"
    ):
        call_pipeline_schedule(call)
    return call


def call_recording_notified(*, notification: dict[str, Any]) -> Call:
    """Seed 003's ``{callId, audioS3Uri, timestamp, metadata}``."""
    call_id = str(notification["callId"])
    call, _ = Call.objects.get_or_create(contact_id=call_id)
    call = Call.objects.select_for_update().get(pk=call.pk)
    audio = str(notification["audioS3Uri"])
    update = ["s3_input_uri", "initiated_at", "attributes", "updated_at"]
    if call.s3_input_uri and call.s3_input_uri != audio:
        # Another recording of the call (corrected, re-uploaded): the job and result of
        # the one before are not this one's. The pipeline transcribes it and its
        # transcript and analytics replace the ones before (kept until then).
        logger.info("Call %s: new recording %s replaces %s", call_id, audio, call.s3_input_uri)
        call.transcription_job = call.s3_output_uri = call.s3_output_version = ""
        update += ["transcription_job", "s3_output_uri", "s3_output_version"]
    call.s3_input_uri = audio
    call.initiated_at = call.initiated_at or parse_time(notification.get("timestamp"))
    metadata = notification.get("metadata") or {}
    if isinstance(metadata, dict) and metadata:
        call.attributes = {**call.attributes, **{str(k): v for k, v in metadata.items()}}
    call.save(update_fields=update)
    call_pipeline_schedule(call)
    return call


#: The folders Bedrock Data Automation writes its outputs in, under
#: ``{callId}/{job id}/{asset}/``; the ``job_metadata.json`` beside them names each one.
BDA_OUTPUT_FOLDERS = frozenset({"standard_output", "custom_output"})


def s3_result_created(*, record: dict[str, Any]) -> bool:
    """An S3 event for ``{callId}/.../result(s).json`` or ``job_metadata.json``. Data
    Automation's own output objects (standard and custom) are ignored: its
    ``job_metadata.json`` is the one that drives the pipeline; so is S3's
    ``s3:TestEvent`` (it names no object)."""
    if is_s3_test_event(record):
        return False
    if "Records" in record:
        s3 = record["Records"][0]["s3"]
        bucket, key = s3["bucket"]["name"], s3["object"]["key"]
        version = s3["object"].get("versionId") or s3["object"].get("eTag")
    else:
        bucket, key = record["detail"]["bucket"]["name"], record["detail"]["object"]["key"]
        found = record["detail"]["object"]
        version = found.get("version-id") or found.get("etag")
    # Which version of the object this is: Data Automation writes a call's new result at
    # the same key, and a version the transcript was not read from is read again.
    version = str(version or "")[:255]  # Call.s3_output_version
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
    contact_id = contact_id_text(contact_id, "The S3 key's contact id")
    if not contact_id or BDA_OUTPUT_FOLDERS.intersection(key.split("/")[:-1]):
        # A Data Automation output object: ``job_metadata.json`` names them and drives the
        # pipeline; read on its own, one would replace the call's result (and fail it).
        return False
    uri = f"s3://{bucket}/{key}"
    call = Call.objects.select_for_update().filter(contact_id=contact_id).first()
    if call is None:
        # The result came before the call's record (CTR or seed 003's notification): keep
        # it on a new call row. The record finds the row by contact id and starts the
        # pipeline, which reads this result (``call_transcribe``).
        call, created = Call.objects.get_or_create(
            contact_id=contact_id, defaults={"s3_output_uri": uri, "s3_output_version": version}
        )
        if created:
            logger.info("Result %s for unknown call %s kept until its record", uri, contact_id)
            return True
        call = Call.objects.select_for_update().get(pk=call.pk)
    call.s3_output_uri = uri
    call.s3_output_version = version
    call.save(update_fields=["s3_output_uri", "s3_output_version", "updated_at"])
    call_pipeline_schedule(call)
    return True
