"""Parse S3 object events in the shapes AWS delivers them.

- EventBridge: ``{"source": "aws.s3", "detail-type": "Object Created" | "Object Deleted",
  "detail": {"bucket": {"name"}, "object": {"key", "sequencer"?}}, "id"}``; an EventBridge
  rule targeting SQS delivers the same JSON as the message body.
- S3 event notifications: ``{"Records": [{"eventSource": "aws:s3", "eventName":
  "ObjectCreated:Put" | "ObjectRemoved:Delete" | ..., "s3": {"bucket": {"name"}, "object":
  {"key" (URL-encoded), "sequencer"}}}]}``, directly or wrapped in an SNS envelope
  (``{"Type": "Notification", "Message": "<json>"}``).
- ``s3:TestEvent`` (sent when a notification is configured) is recognised and ignored.

A body that cannot be read as a whole (not UTF-8, not JSON, NaN, nested too deep: the
project's ``json_loads``) raises ``InvalidInput`` (a 400). One record naming an object S3
could not have sent (a bucket or key with NUL, a key over 1,024 bytes, a bucket name
longer than any S3 allows, a missing one) is refused on its own, logged with the reason,
and the other records of the delivery are kept; a delivery whose records are all refused
raises. NUL elsewhere in a record (its id, fields only kept) is stored as U+FFFD
(PostgreSQL text and jsonb cannot hold NUL).

Deliveries arrive in any order (SNS, SQS and EventBridge do not keep it): the events of
one key are ordered by their ``sequencer``, a hexadecimal string. AWS: "If you compare the
sequencer strings from two event notifications on the same object key, the event
notification with the greater sequencer hexadecimal value is the event that occurred
later"; they "can be of different lengths. So to compare these values, you first left
pad the shorter value with zeros and then do lexicographical comparison" (S3 user guide,
"Event message structure"; an earlier edition said "right pad", which would not compare
the hexadecimal values). ``sequencer_normalize`` pads every one to the same width, so
comparing the stored strings compares the values.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote_plus

from support.errors import InvalidInput
from support.parsing import UnreadableJson, contains_nul, json_loads, without_nul
from support.sns import StaleMessage, sns_timestamp_check

logger = logging.getLogger(__name__)

UPSERT, DELETE = "upsert", "delete"

# The width every sequencer is left-padded to (``ObjectEvent.sequencer``'s column); S3's
# are 16 to 18 hexadecimal digits.
SEQUENCER_WIDTH = 32
_HEX = re.compile(r"[0-9A-Fa-f]+")

# S3's limits: a key is at most 1,024 bytes of UTF-8; a bucket name 3 to 63 characters,
# but buckets made in us-east-1 before March 2018 may have up to 255 (and
# ``ObjectEvent.bucket`` holds 255), so those are still taken.
KEY_MAX_BYTES = 1024
BUCKET_MAX_LENGTH = 255
BUCKET_MIN_LENGTH = 3


class RecordRefused(InvalidInput):
    """One record of a delivery that names no object S3 could have sent."""


def _object_checked(bucket: Any, key: Any, *, where: str) -> tuple[str, str]:
    """``(bucket, key)`` when an S3 object could have them; ``RecordRefused`` naming the
    field otherwise. ``where``: the record's path (``detail``, ``Records[2].s3``)."""
    if not isinstance(bucket, str):
        raise RecordRefused(f"{where}.bucket.name is required")
    if not isinstance(key, str) or not key:
        raise RecordRefused(f"{where}.object.key is required")
    if contains_nul(bucket):
        raise RecordRefused(f"{where}.bucket.name: NUL characters are not accepted")
    if not BUCKET_MIN_LENGTH <= len(bucket) <= BUCKET_MAX_LENGTH:
        raise RecordRefused(
            f"{where}.bucket.name: {len(bucket)} characters; an S3 bucket name has "
            f"{BUCKET_MIN_LENGTH} to {BUCKET_MAX_LENGTH}"
        )
    if contains_nul(key):
        raise RecordRefused(f"{where}.object.key: NUL characters are not accepted")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > KEY_MAX_BYTES:
        raise RecordRefused(
            f"{where}.object.key: {size} bytes; an S3 key has at most {KEY_MAX_BYTES} bytes"
        )
    return bucket, key


def _nul_free(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    """The record as kept: NUL (which PostgreSQL cannot store) as U+FFFD."""
    return cast("dict[str, Any]", without_nul(record))


def sequencer_normalize(raw: Any) -> str:
    """S3's ``sequencer`` as stored: upper-case, left-padded with zeros to
    ``SEQUENCER_WIDTH`` (so that two compare as their hexadecimal values do); "" when
    there is none or it is not one (not hexadecimal, or longer than the width): such an
    event is ordered by receipt."""
    if not isinstance(raw, str) or not _HEX.fullmatch(raw) or len(raw) > SEQUENCER_WIDTH:
        return ""
    return raw.upper().rjust(SEQUENCER_WIDTH, "0")


@dataclass(frozen=True)
class S3ObjectEvent:
    event_key: str
    bucket: str
    key: str
    action: str
    payload: dict[str, Any]
    sequencer: str = ""  # normalized (``sequencer_normalize``); "" when it had none


def _eventbridge(body: dict[str, Any]) -> list[S3ObjectEvent]:
    detail_type = body.get("detail-type")
    action = {"Object Created": UPSERT, "Object Deleted": DELETE}.get(str(detail_type))
    if action is None:
        return []  # other S3 event types (restore, tagging...) are acknowledged and ignored
    detail = body.get("detail")
    bucket_field = detail.get("bucket") if isinstance(detail, dict) else None
    obj = detail.get("object") if isinstance(detail, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    bucket, key = _object_checked(  # the delivery's one record: refused, a 400
        bucket_field.get("name") if isinstance(bucket_field, dict) else None,
        obj.get("key"),
        where="detail",
    )
    event_id = _nul_free(str(body.get("id") or f"{bucket}/{key}/{obj.get('sequencer', '')}"))
    return [
        S3ObjectEvent(
            f"eb:{event_id}",
            bucket,
            key,
            action,
            _payload(body),
            sequencer_normalize(obj.get("sequencer")),
        )
    ]


def _records(body: dict[str, Any]) -> list[S3ObjectEvent]:
    events = []
    refused: list[RecordRefused] = []
    records = body.get("Records") or []
    for index, record in enumerate(records if isinstance(records, list) else []):
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            continue
        name = str(record.get("eventName", ""))
        if name.startswith("ObjectCreated:"):
            action = UPSERT
        elif name.startswith("ObjectRemoved:"):
            action = DELETE
        else:
            continue
        s3 = record.get("s3")
        bucket_field = s3.get("bucket") if isinstance(s3, dict) else None
        obj = s3.get("object") if isinstance(s3, dict) else None
        obj = obj if isinstance(obj, dict) else {}
        key = obj.get("key")
        try:
            bucket, key = _object_checked(
                bucket_field.get("name") if isinstance(bucket_field, dict) else None,
                # notification keys are URL-encoded ("%00" is a NUL once decoded)
                unquote_plus(key) if isinstance(key, str) else None,
                where=f"Records[{index}].s3",
            )
        except RecordRefused as exc:
            logger.warning("kb event refused: %s", exc)
            refused.append(exc)
            continue
        natural = f"s3:{bucket}/{key}/{obj.get('sequencer') or record.get('eventTime', '')}"
        events.append(
            S3ObjectEvent(
                _nul_free(f"{natural}/{action}"),
                bucket,
                key,
                action,
                _payload(record),
                sequencer_normalize(obj.get("sequencer")),
            )
        )
    if refused and not events:
        raise refused[0]  # nothing of the delivery could be kept: the sender hears why
    return events


def parse_events(body: Any, *, sns_fresh: bool = False) -> list[S3ObjectEvent]:
    """The object events in one delivery (possibly none); malformed input raises
    ``InvalidInput``: a body unreadable as a whole, or one whose every record is refused
    (the others' are logged and left out: module docstring).

    ``sns_fresh``: SNS envelopes must carry a recent ``Timestamp`` (HTTP intake; a queue
    read from SQS may legitimately hold older ones).
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json_loads(body)
        except UnreadableJson as exc:
            raise InvalidInput(str(exc)) from None
    if isinstance(body, list):
        return [e for item in body for e in parse_events(item, sns_fresh=sns_fresh)]
    if not isinstance(body, dict):
        raise InvalidInput("body: a JSON object is required")
    if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        if sns_fresh:
            try:
                sns_timestamp_check(body)
            except StaleMessage as exc:
                raise InvalidInput(str(exc)) from exc
        return parse_events(body["Message"])  # SNS envelope
    if body.get("Event") == "s3:TestEvent":
        return []
    if body.get("source") == "aws.s3" and "detail-type" in body:
        return _eventbridge(body)
    if "Records" in body:
        return _records(body)
    raise InvalidInput("body: neither an EventBridge S3 event nor an S3 notification")
