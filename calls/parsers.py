"""Pure parsing of what Amazon Connect, Transcribe, Data Automation, S3 and SNS send.

No database here: each parser turns a vendor record into small dataclasses, and raises
:class:`RecordError` with a message naming the missing or bad field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from calls.models import AgentStateEvent, Call, EventSource
from support.parsing import json_loads

AGENT_EVENT_TYPES = frozenset({"STATE_CHANGE", "HEART_BEAT", "LOGIN", "LOGOUT"})
CONTACT_EVENT_DETAIL = "Amazon Connect Contact Event"
TRANSCRIBE_DETAIL = "Transcribe Job State Change"
S3_CREATED_DETAIL = "Object Created"
#: What S3 sends once when an event notification is configured (``{"Service": "Amazon
#: S3", "Event": "s3:TestEvent", "Time", "Bucket", "RequestId", "HostId"}``): no object.
S3_TEST_EVENT = "s3:TestEvent"


class RecordError(ValueError):
    """A record we cannot use; the message names what is wrong."""


@dataclass(frozen=True)
class Classified:
    """One record, its source kind and its idempotency key."""

    source: str
    external_id: str
    contact_id: str
    payload: dict[str, Any]


#: Timestamps outside these years are refused: no call happened before 2000, and a
#: year like 9999 (or 1 with an offset) is out of PostgreSQL's range once in UTC.
PLAUSIBLE_YEARS = range(2000, 2100)
#: Clocks drift, but a record from further ahead would head every list "newest first".
FUTURE_TOLERANCE = timedelta(days=1)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; none: UTC, as every Connect timestamp is), or epoch
    seconds/millis → aware datetime. A timestamp outside :data:`PLAUSIBLE_YEARS` or more
    than :data:`FUTURE_TOLERANCE` ahead is a ``RecordError``."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"Bad timestamp {value!r}.")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise RecordError(f"Bad timestamp {value!r}.")
        seconds = value / 1000 if value > 10_000_000_000 else value
        try:
            parsed = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise RecordError(f"Bad timestamp {value!r}.") from exc
    else:
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RecordError(f"Bad timestamp {value!r}.") from exc
        if parsed.tzinfo is None:  # Connect's timestamps are UTC (it writes the Z)
            parsed = parsed.replace(tzinfo=UTC)
    if parsed.year not in PLAUSIBLE_YEARS:
        raise RecordError(
            f"Timestamp {value!r} is outside {PLAUSIBLE_YEARS[0]}-{PLAUSIBLE_YEARS[-1]}."
        )
    if parsed > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise RecordError(f"Timestamp {value!r} is more than a day in the future.")
    return parsed


# --- shapes of untrusted records -------------------------------------------------------


def obj(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a JSON object, ``{}`` when absent (null); otherwise a
    ``RecordError`` naming the field (a string there used to be an AttributeError)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{where} must be an object.")
    return value


def objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A list of JSON objects (``[]`` when absent); ``RecordError`` otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{where} must be a list.")
    return [obj(item, f"{where}[{i}]") for i, item in enumerate(value)]


def text_field(value: Any, where: str, max_length: int) -> str:
    """A text field: a string or a number, at most ``max_length`` characters (the
    column's size: a longer value failed in the database); ``""`` when absent."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"{where} must be a string.")
    result = str(value)
    if len(result) > max_length:
        raise RecordError(f"{where} is longer than {max_length} characters.")
    return result


def _max(model: Any, name: str) -> int:
    return int(model._meta.get_field(name).max_length)


def contact_id_text(value: Any, where: str) -> str:
    """A contact (call) id: a string or a number that fits ``Call.contact_id``."""
    return text_field(value, where, _max(Call, "contact_id"))


# --- classification -------------------------------------------------------------------


def decode_kinesis_data(data: str, what: str = "Kinesis record data") -> dict[str, Any]:
    try:
        decoded = base64.b64decode(data, validate=True)
        record = json_loads(decoded, what=f"The {what}")
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"{what} is not base64 JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise RecordError(f"{what} must be a JSON object.")
    return record


def is_firehose_delivery(body: Any) -> TypeGuard[dict[str, Any]]:
    """A Firehose HTTP endpoint delivery: ``{"requestId", "timestamp", "records": [{"data":
    base64}]}`` (Amazon Data Firehose, "HTTP endpoint delivery request and response
    specifications")."""
    return isinstance(body, dict) and "requestId" in body and isinstance(body.get("records"), list)


def is_s3_test_event(record: Any) -> bool:
    return isinstance(record, dict) and record.get("Event") == S3_TEST_EVENT


def firehose_body(raw: bytes, content_encoding: str, *, max_bytes: int) -> bytes:
    """A Firehose delivery's body: Firehose gzips it when the stream's compression is on
    (``Content-Encoding: gzip``). Inflated to at most ``max_bytes`` (a small body must not
    become gigabytes here); more, or a body that is not gzip, is a ``RecordError``."""
    if content_encoding.strip().lower() != "gzip":
        return raw
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise RecordError(f"The body is not gzip: {exc}") from exc
    if len(body) > max_bytes or inflater.unconsumed_tail:
        raise RecordError(f"The body inflates to more than {max_bytes} bytes.")
    return body


def expand(body: Any) -> list[dict[str, Any] | RecordError]:
    """Split a body into records: a list, a Kinesis batch, an SNS→SQS wrap, or one record."""
    if isinstance(body, list):
        out: list[dict[str, Any] | RecordError] = []
        for item in body:
            out.extend(expand(item))
        return out
    if not isinstance(body, dict):
        return [RecordError("A record must be a JSON object.")]
    records = body.get("Records")
    if (
        isinstance(records, list)
        and records
        and isinstance(records[0], dict)
        and ("kinesis" in records[0])
    ):
        kout: list[dict[str, Any] | RecordError] = []
        for rec in records:
            try:
                where = f"Records[{len(kout)}]"
                kinesis = obj(obj(rec, where).get("kinesis"), f"{where}.kinesis")
                kout.append(decode_kinesis_data(str(kinesis.get("data", ""))))
            except RecordError as exc:
                kout.append(exc)
        return kout
    if is_firehose_delivery(body):
        # One Firehose delivery: each record's data is one record (a contact trace record
        # Connect streamed to Firehose, or what a Kinesis stream feeding Firehose held).
        fout: list[dict[str, Any] | RecordError] = []
        for i, rec in enumerate(body["records"]):
            try:
                data = obj(rec, f"records[{i}]").get("data")
                if not isinstance(data, str):
                    raise RecordError(f"records[{i}].data must be a base64 string.")
                fout.append(decode_kinesis_data(data, f"Firehose records[{i}].data"))
            except RecordError as exc:
                fout.append(exc)
        return fout
    if (
        isinstance(records, list)
        and len(records) > 1
        and isinstance(records[0], dict)
        and records[0].get("eventSource") == "aws:s3"
    ):
        # An S3 notification may carry several objects: one record each (each its own
        # key and event, applied on its own), never the first alone.
        return [{**body, "Records": [rec]} for rec in records]
    if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        try:
            return expand(json_loads(body["Message"], what="The SNS Message"))
        except ValueError:
            return [RecordError("SNS Message is not JSON.")]
    return [body]


def _is_contact_trace_record(record: dict[str, Any]) -> bool:
    return "ContactId" in record or "AWSContactTraceRecordFormatVersion" in record


def _is_agent_event(record: dict[str, Any]) -> bool:
    return "EventType" in record and ("AgentARN" in record or "CurrentAgentSnapshot" in record)


def classify(record: dict[str, Any]) -> Classified:
    """Recognise one record; raises RecordError for bad or unknown ones."""
    if is_s3_test_event(record):
        # Recorded (and applied as ignored), as ``knowledge.s3events`` ignores it: it names
        # no object. Refused, it stayed on the queue, went to the dead-letter queue and
        # raised the failed-events alert for a notification that was set up right.
        request_id = text_field(record.get("RequestId"), "RequestId", 128)
        key = request_id or hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        return Classified(EventSource.S3, f"{S3_TEST_EVENT}:{key}", "", record)
    detail_type = record.get("detail-type")
    if detail_type == CONTACT_EVENT_DETAIL:
        detail = obj(record.get("detail"), "detail")
        contact_id = contact_id_text(detail.get("contactId"), "detail.contactId")
        if not contact_id:
            raise RecordError("Contact event without detail.contactId.")
        event_id = str(record.get("id") or f"{contact_id}:{detail.get('eventType', '')}")
        return Classified(EventSource.CONTACT_EVENT, event_id, contact_id, record)
    if detail_type == TRANSCRIBE_DETAIL:
        job = text_field(
            obj(record.get("detail"), "detail").get("TranscriptionJobName"),
            "detail.TranscriptionJobName",
            _max(Call, "transcription_job"),
        )
        if not job:
            raise RecordError("Transcribe event without detail.TranscriptionJobName.")
        return Classified(EventSource.TRANSCRIBE, str(record.get("id") or job), job, record)
    if detail_type == S3_CREATED_DETAIL:
        detail = obj(record.get("detail"), "detail")
        obj(detail.get("bucket"), "detail.bucket")
        key = str(obj(detail.get("object"), "detail.object").get("key") or "")
        if not key:
            raise RecordError("S3 event without detail.object.key.")
        return Classified(EventSource.S3, str(record.get("id") or key), "", record)
    if detail_type is not None:
        carried = record.get("detail")
        if isinstance(carried, dict) and (
            _is_contact_trace_record(carried) or _is_agent_event(carried)
        ):
            # Connect streams these to Kinesis only; a bridge that publishes them on an
            # EventBridge bus (seed 002: "CTR event published to EventBridge") wraps each
            # under a detail-type of its own. The record is what it carries, under the same
            # key as from the stream (so one that comes both ways is applied once).
            return classify(carried)
        raise RecordError(f"Unknown EventBridge detail-type {detail_type!r}.")
    records = record.get("Records")
    if (
        isinstance(records, list)
        and records
        and isinstance(records[0], dict)
        and (records[0].get("eventSource") == "aws:s3")
    ):
        for i, item in enumerate(records):
            where = f"Records[{i}]"
            s3 = obj(obj(item, where).get("s3"), f"{where}.s3")
            obj(s3.get("bucket"), f"{where}.s3.bucket")
            obj(s3.get("object"), f"{where}.s3.object")
        s3 = obj(records[0].get("s3"), "Records[0].s3")
        key = str((s3.get("object") or {}).get("key") or "")
        if not key:
            raise RecordError("S3 notification without Records[0].s3.object.key.")
        etag = str((s3.get("object") or {}).get("eTag") or "")
        return Classified(EventSource.S3, f"{key}:{etag}", "", record)
    if _is_agent_event(record):
        event_type = str(record["EventType"])
        if event_type not in AGENT_EVENT_TYPES:
            raise RecordError(f"Unknown agent EventType {event_type!r}.")
        event_id = text_field(record.get("EventId"), "EventId", _max(AgentStateEvent, "event_id"))
        if not event_id:
            raise RecordError("Agent event without EventId.")
        return Classified(EventSource.AGENT_EVENT, event_id, "", record)
    if "callId" in record or "audioS3Uri" in record:
        call_id = contact_id_text(record.get("callId"), "callId")
        if not call_id:
            raise RecordError("Recording notification without callId.")
        audio = text_field(record.get("audioS3Uri"), "audioS3Uri", _max(Call, "s3_input_uri"))
        if not audio.startswith("s3://"):
            raise RecordError("Recording notification needs audioS3Uri as s3://bucket/key.")
        # One event per recording of a call (seed 003's message: callId, audioS3Uri,
        # timestamp): a redelivery of the same message is a duplicate, a corrected or
        # re-uploaded recording (another audioS3Uri, or the same one published again
        # with a new timestamp) is processed like the first.
        when = record.get("timestamp")
        digest = hashlib.sha256(f"{audio}\n{'' if when is None else when}".encode()).hexdigest()
        return Classified(EventSource.RECORDING, f"{call_id}:{digest[:16]}", call_id, record)
    if _is_contact_trace_record(record):
        contact_id = contact_id_text(record.get("ContactId"), "ContactId")
        if not contact_id:
            raise RecordError("Contact trace record without ContactId.")
        version = record.get("LastUpdateTimestamp") or record.get("DisconnectTimestamp") or ""
        return Classified(EventSource.CTR, f"{contact_id}:{version}", contact_id, record)
    raise RecordError(
        "Unknown record: expected a Connect contact event, a contact trace record, an agent "
        "event, a recording notification, or a Transcribe/S3 event."
    )


# --- Connect contact records --------------------------------------------------------------


@dataclass
class CallFields:
    contact_id: str
    channel: str = ""
    initiation_method: str = ""
    initiated_at: datetime | None = None
    connected_to_agent_at: datetime | None = None
    disconnected_at: datetime | None = None
    disconnect_reason: str = ""
    queue_name: str = ""
    agent_username: str = ""
    agent_arn: str = ""
    customer_phone: str = ""
    recording_location: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


def ctr_fields(record: dict[str, Any]) -> CallFields:
    """Fields of a contact trace record (the CTR data model)."""
    agent = obj(record.get("Agent"), "Agent")
    queue = obj(record.get("Queue"), "Queue")
    recording = obj(record.get("Recording"), "Recording")
    recordings = objects(record.get("Recordings"), "Recordings")
    if not recording and recordings:
        # the call's audio: a screen recording (MediaStreamType VIDEO) is not transcribed
        audio = [
            r for r in recordings if str(r.get("MediaStreamType") or "AUDIO").upper() == "AUDIO"
        ]
        recording = audio[0] if audio else {}
    endpoint = obj(record.get("CustomerEndpoint"), "CustomerEndpoint")
    location = text_field(
        recording.get("Location"), "Recording.Location", _max(Call, "recording_location")
    )
    if location and not location.startswith("s3://"):
        location = f"s3://{location}"
    attributes = obj(record.get("Attributes"), "Attributes")

    def field(value: Any, where: str, name: str) -> str:
        return text_field(value or None, where, _max(Call, name))

    initiated_at = parse_time(record.get("InitiationTimestamp"))
    disconnected_at = parse_time(record.get("DisconnectTimestamp"))
    if initiated_at and disconnected_at and disconnected_at < initiated_at:
        raise RecordError(
            f"DisconnectTimestamp {record.get('DisconnectTimestamp')} is before "
            f"InitiationTimestamp {record.get('InitiationTimestamp')}."
        )
    return CallFields(
        contact_id=contact_id_text(record["ContactId"], "ContactId"),
        channel=field(record.get("Channel"), "Channel", "channel"),
        initiation_method=field(
            record.get("InitiationMethod"), "InitiationMethod", "initiation_method"
        ),
        initiated_at=initiated_at,
        connected_to_agent_at=parse_time(agent.get("ConnectedToAgentTimestamp")),
        disconnected_at=disconnected_at,
        disconnect_reason=field(
            record.get("DisconnectReason"), "DisconnectReason", "disconnect_reason"
        ),
        queue_name=field(queue.get("Name"), "Queue.Name", "queue_name"),
        agent_username=field(agent.get("Username"), "Agent.Username", "agent_username"),
        agent_arn=field(agent.get("ARN"), "Agent.ARN", "agent_arn"),
        customer_phone=field(endpoint.get("Address"), "CustomerEndpoint.Address", "customer_phone")
        if endpoint.get("Type") in (None, "TELEPHONE_NUMBER")
        else "",
        recording_location=text_field(
            location or None, "Recording.Location", _max(Call, "recording_location")
        ),
        attributes={str(k): v for k, v in attributes.items()},
    )


def contact_event_fields(record: dict[str, Any]) -> CallFields:
    """Fields of an EventBridge "Amazon Connect Contact Event" (camelCase detail)."""
    detail = obj(record.get("detail"), "detail")
    agent = obj(detail.get("agentInfo"), "detail.agentInfo")
    queue = obj(detail.get("queueInfo"), "detail.queueInfo")
    queue_arn = text_field(queue.get("queueArn"), "detail.queueInfo.queueArn", 2048)
    queue_name = queue_arn.rsplit("/", 1)[-1]
    return CallFields(
        contact_id=contact_id_text(detail["contactId"], "detail.contactId"),
        channel=text_field(
            detail.get("channel") or None, "detail.channel", _max(Call, "channel")
        ).upper(),
        initiation_method=text_field(
            detail.get("initiationMethod") or None,
            "detail.initiationMethod",
            _max(Call, "initiation_method"),
        ),
        initiated_at=parse_time(detail.get("initiationTimestamp")),
        connected_to_agent_at=parse_time(agent.get("connectedToAgentTimestamp")),
        disconnected_at=parse_time(detail.get("disconnectTimestamp")),
        queue_name=text_field(
            queue_name or None, "detail.queueInfo.queueArn", _max(Call, "queue_name")
        ),
        agent_arn=text_field(
            agent.get("agentArn") or None, "detail.agentInfo.agentArn", _max(Call, "agent_arn")
        ),
    )


# --- agent events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentState:
    event_id: str
    event_type: str
    agent_arn: str
    username: str
    state: str
    state_started_at: datetime | None
    occurred_at: datetime


def agent_state(record: dict[str, Any]) -> AgentState:
    """The effective state: after-contact work or on a contact beats the CCP status.

    In the agent event stream, a contact in state ``ENDED`` still on the agent's snapshot
    is after-contact work; ``CONNECTED``/``CONNECTED_ONHOLD`` is on a contact.
    """
    snapshot = obj(record.get("CurrentAgentSnapshot"), "CurrentAgentSnapshot")
    config = obj(snapshot.get("Configuration"), "CurrentAgentSnapshot.Configuration")
    status = obj(snapshot.get("AgentStatus"), "CurrentAgentSnapshot.AgentStatus")
    occurred = parse_time(record.get("EventTimestamp"))
    if occurred is None:
        raise RecordError("Agent event without EventTimestamp.")
    state = text_field(
        status.get("Name") or None, "AgentStatus.Name", _max(AgentStateEvent, "state")
    )
    started = parse_time(status.get("StartTimestamp"))
    for contact in objects(snapshot.get("Contacts"), "CurrentAgentSnapshot.Contacts"):
        contact_state = str(contact.get("State") or "")
        if contact_state == "ENDED":
            state, started = "AfterContactWork", parse_time(contact.get("StateStartTimestamp"))
            break
        if contact_state in ("CONNECTED", "CONNECTED_ONHOLD"):
            state = "OnContact" if contact_state == "CONNECTED" else "OnHold"
            started = parse_time(contact.get("StateStartTimestamp"))
    event_type = str(record.get("EventType"))
    if event_type == "LOGOUT":
        state, started = "Offline", occurred
    return AgentState(
        event_id=str(record.get("EventId")),
        event_type=event_type,
        agent_arn=text_field(
            record.get("AgentARN") or None, "AgentARN", _max(AgentStateEvent, "agent_arn")
        ),
        username=text_field(
            config.get("Username") or None,
            "Configuration.Username",
            _max(AgentStateEvent, "username"),
        ),
        state=state,
        state_started_at=started or occurred,
        occurred_at=occurred,
    )


# --- transcripts ---------------------------------------------------------------------------


@dataclass
class Segment:
    speaker: str
    start: float
    end: float
    text: str
    sentiment: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "sentiment": self.sentiment,
        }


@dataclass
class ParsedResult:
    """What a transcription result gives: text, segments and, for BDA, analytics."""

    source: str
    text: str
    segments: list[Segment]
    summary: str = ""
    topic_summary: str = ""
    audio_summary: str = ""
    categories: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    content_moderation: list[Any] = field(default_factory=list)
    bedrock_status: str = ""


def seconds(value: Any, where: str, *, scale: float = 1.0) -> float:
    """A time offset in a result (``"12.5"``, ``12500`` millis with ``scale=1000``);
    0 when absent, ``RecordError`` for anything that is not a finite number."""
    if value in (None, ""):
        return 0.0
    try:
        number = float(value) if not isinstance(value, bool | dict | list) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise RecordError(f"{where} must be a number, not {str(value)[:40]!r}.")
    return number / scale


def _speaker_name(label: str) -> str:
    return {"spk_0": "Agent", "spk_1": "Customer", "ch_0": "Agent", "ch_1": "Customer"}.get(
        label, label or "Speaker"
    )


def parse_transcribe(doc: dict[str, Any]) -> ParsedResult:
    """Amazon Transcribe output JSON (speaker labels; ``audio_segments`` when present)."""
    results = doc.get("results")
    if not isinstance(results, dict) or "transcripts" not in results:
        raise RecordError("Not a Transcribe result: results.transcripts is missing.")
    transcripts = objects(results.get("transcripts"), "results.transcripts")
    text = " ".join(str(t.get("transcript", "")) for t in transcripts)
    segments: list[Segment] = []
    where = "results.audio_segments"
    for i, seg in enumerate(objects(results.get("audio_segments"), where)):
        segments.append(
            Segment(
                speaker=_speaker_name(str(seg.get("speaker_label") or "")),
                start=seconds(seg.get("start_time"), f"{where}[{i}].start_time"),
                end=seconds(seg.get("end_time"), f"{where}[{i}].end_time"),
                text=str(seg.get("transcript") or ""),
            )
        )
    if not segments:
        segments = _segments_from_items(results)
    return ParsedResult(source="transcribe", text=text, segments=segments)


def _segments_from_items(results: dict[str, Any]) -> list[Segment]:
    """Older output: group ``items`` into turns by the speaker_labels segments."""
    turns: list[Segment] = []
    speaker_of: list[tuple[float, float, str]] = []
    where = "results.speaker_labels.segments"
    labels = obj(results.get("speaker_labels"), "results.speaker_labels")
    for i, seg in enumerate(objects(labels.get("segments"), where)):
        if seg.get("start_time") in (None, "") or seg.get("end_time") in (None, ""):
            raise RecordError(f"{where}[{i}].start_time must be a number (and end_time).")
        speaker_of.append(
            (
                seconds(seg["start_time"], f"{where}[{i}].start_time"),
                seconds(seg["end_time"], f"{where}[{i}].end_time"),
                str(seg.get("speaker_label") or ""),
            )
        )
    for i, item in enumerate(objects(results.get("items"), "results.items")):
        where = f"results.items[{i}]"
        alternatives = objects(item.get("alternatives"), f"{where}.alternatives")
        content = str((alternatives or [{}])[0].get("content") or "")
        if item.get("type") == "punctuation":
            if turns:
                turns[-1].text += content
            continue
        start = seconds(item.get("start_time"), f"{where}.start_time")
        end = seconds(item.get("end_time"), f"{where}.end_time") or start
        label = str(item.get("speaker_label") or "")
        if not label:
            label = next((s for a, b, s in speaker_of if a <= start <= b), "")
        speaker = _speaker_name(label)
        if turns and turns[-1].speaker == speaker:
            turns[-1].text += f" {content}"
            turns[-1].end = end
        else:
            turns.append(Segment(speaker=speaker, start=start, end=end, text=content))
    return turns


_BDA_TURN = re.compile(r"^\[(?P<spk>[a-z]+_\d+)\]:\s*(?P<text>.*)$")


def parse_bda(doc: dict[str, Any], custom: dict[str, Any] | None = None) -> ParsedResult:
    """Bedrock Data Automation audio standard output (``result.json``), plus the custom
    blueprint output (``inference_result``) with seed 003's call_summary/categories/topics.

    Seed 003's single ``results.json`` holding both is accepted too (``custom_output`` key).
    """
    audio = doc.get("audio")
    if not isinstance(audio, dict):
        raise RecordError("Not a Data Automation audio result: the audio object is missing.")
    transcript = obj(audio.get("transcript"), "audio.transcript")
    representation = obj(transcript.get("representation"), "audio.transcript.representation")
    text = str(representation.get("text") or "")
    segments: list[Segment] = []
    for i, seg in enumerate(objects(doc.get("audio_segments"), "audio_segments")):
        where = f"audio_segments[{i}]"
        label = str(obj(seg.get("speaker"), f"{where}.speaker").get("speaker_label") or "")
        segments.append(
            Segment(
                speaker=_speaker_name(label),
                start=seconds(seg.get("start_timestamp_millis"), where, scale=1000),
                end=seconds(seg.get("end_timestamp_millis"), where, scale=1000),
                text=str(seg.get("text") or ""),
            )
        )
    if not segments:
        for line in text.splitlines():
            match = _BDA_TURN.match(line.strip())
            if match:
                segments.append(Segment(_speaker_name(match["spk"]), 0.0, 0.0, match["text"]))
    topics_std = objects(audio.get("topics"), "audio.topics")
    topic_summary = "\n".join(str(t.get("summary") or "") for t in topics_std if t.get("summary"))
    custom_doc = obj(custom or doc.get("custom_output"), "custom_output")
    inference = obj(custom_doc.get("inference_result"), "custom_output.inference_result")
    moderation = audio.get("content_moderation") or []
    categories = inference.get("call_categories") or []
    topics = inference.get("topics") or []
    result = ParsedResult(
        source="data_automation",
        text=text,
        segments=segments,
        summary=str(inference.get("call_summary") or ""),
        topic_summary=topic_summary,
        categories=[str(c) for c in categories] if isinstance(categories, list) else [],
        topics=[str(t) for t in topics] if isinstance(topics, list) else [],
        content_moderation=moderation if isinstance(moderation, list) else [],
        audio_summary=str(audio.get("summary") or ""),
        bedrock_status="Success",
    )
    return result


#: Seed 003's Data Automation outputs by name, as its ``results.json`` (and the custom
#: blueprint its persistence step reads, under ``inference_result``) holds them.
SEED_003_OUTPUTS = frozenset(
    {
        "call_summary",
        "call_categories",
        "topics",
        "transcript",
        "audio_summary",
        "topic_summary",
        "audio_content_moderation",
    }
)


def _flat_outputs(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The seed 003 outputs of a flat ``results.json``: at the top level, or all under a
    custom output's ``inference_result`` (no ``audio`` object beside it); else None."""
    if SEED_003_OUTPUTS.intersection(doc) and "results" not in doc:
        return doc
    inference = doc.get("inference_result")
    if isinstance(inference, dict) and SEED_003_OUTPUTS.intersection(inference):
        return inference
    return None


def _names(value: Any, where: str) -> list[str]:
    """A list of names (``["Billing", "Customer service"]``); one name alone is a list of
    one."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
        raise RecordError(f"{where} must be a list of names.")
    return [str(v) for v in value]


def parse_bda_flat(outputs: dict[str, Any]) -> ParsedResult:
    """Seed 003's outputs by name, mapped to what the nested Data Automation output gives:
    ``transcript`` (the text, ``[spk_0]: …`` lines making the turns; or the standard
    output's ``{"representation": {"text"}}``), ``call_summary`` → the summary,
    ``call_categories``, ``topics``, ``audio_summary``, ``topic_summary`` (text, or the
    standard output's topic list), ``audio_content_moderation`` (a list, or seed 003's one
    ``{categories, severity}`` object)."""
    transcript = outputs.get("transcript")
    if isinstance(transcript, dict):
        representation = obj(transcript.get("representation"), "transcript.representation")
        transcript = representation.get("text")
    text = text_field(transcript, "transcript", 10_000_000)
    segments: list[Segment] = []
    for line in text.splitlines():
        match = _BDA_TURN.match(line.strip())
        if match:
            segments.append(Segment(_speaker_name(match["spk"]), 0.0, 0.0, match["text"]))
    topic_summary = outputs.get("topic_summary")
    if isinstance(topic_summary, list):
        listed = objects(topic_summary, "topic_summary")
        topic_summary = "\n".join(str(t.get("summary")) for t in listed if t.get("summary"))
    moderation = outputs.get("audio_content_moderation")
    if isinstance(moderation, dict):
        moderation = [moderation] if moderation else []
    elif not isinstance(moderation, list):
        moderation = []
    return ParsedResult(
        source="data_automation",
        text=text,
        segments=segments,
        summary=text_field(outputs.get("call_summary"), "call_summary", 1_000_000),
        topic_summary=text_field(topic_summary, "topic_summary", 1_000_000),
        audio_summary=text_field(outputs.get("audio_summary"), "audio_summary", 1_000_000),
        categories=_names(outputs.get("call_categories"), "call_categories"),
        topics=_names(outputs.get("topics"), "topics"),
        content_moderation=moderation,
        bedrock_status="Success",
    )


def parse_result(doc: dict[str, Any]) -> ParsedResult:
    """Any format: the same path for S3 objects, storage files and demo data. Data
    Automation's nested standard output (``audio``), seed 003's outputs by name (flat),
    else Transcribe's."""
    if "audio" in doc:
        return parse_bda(doc)
    flat = _flat_outputs(doc)
    if flat is not None:
        return parse_bda_flat(flat)
    return parse_transcribe(doc)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise RecordError(f"Not an s3://bucket/key URI: {uri!r}.")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _s3_uri(where: dict[str, Any]) -> str:
    """``s3://bucket/key`` from an S3 event's ``{"bucket": {"name"}, "object": {"key"}}``
    (keys arrive URL-encoded)."""
    from urllib.parse import unquote_plus

    bucket = (where.get("bucket") or {}).get("name") or ""
    key = (where.get("object") or {}).get("key") or ""
    return f"s3://{bucket}/{unquote_plus(str(key))}"


def s3_locations(item: Classified) -> list[str]:
    """Every S3 object a record names (``s3://bucket/key``), whether or not it is used:
    recordings, notified audio, created result objects. The intake checks them all
    against ``CALLS_ALLOWED_S3_BUCKETS`` before anything is stored."""
    payload = item.payload
    found: list[str] = []
    if item.source == EventSource.RECORDING:
        found.append(str(payload.get("audioS3Uri") or ""))
    elif item.source == EventSource.CTR:
        recordings = [payload.get("Recording")]
        listed = payload.get("Recordings")
        if isinstance(listed, list):
            recordings.extend(listed)
        for recording in recordings:
            if isinstance(recording, dict) and recording.get("Location"):
                location = str(recording["Location"])
                found.append(location if location.startswith("s3://") else f"s3://{location}")
    elif item.source == EventSource.S3 and not is_s3_test_event(payload):
        records = payload.get("Records")
        if isinstance(records, list):
            for record in records:
                found.append(_s3_uri(record.get("s3") or {} if isinstance(record, dict) else {}))
        else:
            found.append(_s3_uri(payload.get("detail") or {}))
    return found
