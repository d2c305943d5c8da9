"""Parse S3 object events in the shapes AWS delivers them.

- EventBridge: ``{"source": "aws.s3", "detail-type": "Object Created" | "Object Deleted",
  "detail": {"bucket": {"name"}, "object": {"key", "sequencer"?}}, "id"}``; an EventBridge
  rule targeting SQS delivers the same JSON as the message body.
- S3 event notifications: ``{"Records": [{"eventSource": "aws:s3", "eventName":
  "ObjectCreated:Put" | "ObjectRemoved:Delete" | ..., "s3": {"bucket": {"name"}, "object":
  {"key" (URL-encoded), "sequencer"}}}]}``, directly or wrapped in an SNS envelope
  (``{"Type": "Notification", "Message": "<json>"}``).
- ``s3:TestEvent`` (sent when a notification is configured) is recognised and ignored.

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

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from support.errors import InvalidInput
from support.sns import StaleMessage, sns_timestamp_check

UPSERT, DELETE = "upsert", "delete"

# The width every sequencer is left-padded to (``ObjectEvent.sequencer``'s column); S3's
# are 16 to 18 hexadecimal digits.
SEQUENCER_WIDTH = 32
_HEX = re.compile(r"[0-9A-Fa-f]+")


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
    detail = body.get("detail") or {}
    try:
        bucket = str(detail["bucket"]["name"])
        obj = detail["object"]
        key = str(obj["key"])
    except (KeyError, TypeError) as exc:
        raise InvalidInput("detail.bucket.name and detail.object.key are required") from exc
    event_id = str(body.get("id") or f"{bucket}/{key}/{obj.get('sequencer', '')}")
    sequencer = sequencer_normalize(obj.get("sequencer")) if isinstance(obj, dict) else ""
    return [S3ObjectEvent(f"eb:{event_id}", bucket, key, action, body, sequencer)]


def _records(body: dict[str, Any]) -> list[S3ObjectEvent]:
    events = []
    for record in body.get("Records") or []:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            continue
        name = str(record.get("eventName", ""))
        if name.startswith("ObjectCreated:"):
            action = UPSERT
        elif name.startswith("ObjectRemoved:"):
            action = DELETE
        else:
            continue
        try:
            bucket = str(record["s3"]["bucket"]["name"])
            obj = record["s3"]["object"]
            key = unquote_plus(str(obj["key"]))  # notification keys are URL-encoded
        except (KeyError, TypeError) as exc:
            raise InvalidInput("Records[].s3.bucket.name and s3.object.key are required") from exc
        natural = f"s3:{bucket}/{key}/{obj.get('sequencer') or record.get('eventTime', '')}"
        events.append(
            S3ObjectEvent(
                f"{natural}/{action}",
                bucket,
                key,
                action,
                record,
                sequencer_normalize(obj.get("sequencer")),
            )
        )
    return events


def parse_events(body: Any, *, sns_fresh: bool = False) -> list[S3ObjectEvent]:
    """The object events in one delivery (possibly none); malformed input raises.

    ``sns_fresh``: SNS envelopes must carry a recent ``Timestamp`` (HTTP intake; a queue
    read from SQS may legitimately hold older ones).
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"body: invalid JSON ({exc.msg})") from exc
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
