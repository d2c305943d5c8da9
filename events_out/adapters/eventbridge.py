"""Amazon EventBridge: one ``PutEvents`` entry per call, on ``EVENTS_EVENTBRIDGE_BUS``.

Only this module calls EventBridge. The client comes from ``support.aws.aws_client`` (explicit
timeouts, bounded botocore retries); failures become the project's error family through
``support.aws.aws_error``: a whole-call failure as it came, and a refused *entry* (PutEvents
answers 200 with ``FailedEntryCount`` and a per-entry ``ErrorCode``) classified the same
way by its code (``ThrottlingException`` throttled, ``InternalFailure`` retryable, anything
else permanent).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from support.aws import aws_client, aws_error

#: EventBridge refuses an entry larger than 256 KiB (detail included).
MAX_ENTRY_BYTES = 256 * 1024


def eventbridge_entry(*, detail_type: str, detail: dict[str, Any], resources: list[str]) -> dict:
    """The ``PutEvents`` entry for one event (settings read now, never at import)."""
    return {
        "Source": settings.EVENTS_EVENTBRIDGE_SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(detail, separators=(",", ":"), default=str),
        "EventBusName": settings.EVENTS_EVENTBRIDGE_BUS,
        "Resources": resources,
    }


def eventbridge_put(*, entry: dict[str, Any], client: Any = None) -> str:
    """Put one entry; returns EventBridge's event id or raises ``RetryableError`` /
    ``PermanentError`` (``support.aws``)."""
    events = client or aws_client("events", region=settings.EVENTS_EVENTBRIDGE_REGION or None)
    try:
        response = events.put_events(Entries=[entry])
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="EventBridge PutEvents") from exc
    result = (response.get("Entries") or [{}])[0]
    if response.get("FailedEntryCount") or result.get("ErrorCode"):
        refused = ClientError(
            {
                "Error": {
                    "Code": result.get("ErrorCode") or "",
                    "Message": result.get("ErrorMessage"),
                }
            },
            "PutEvents",
        )
        raise aws_error(refused, context="EventBridge refused the entry")
    return str(result.get("EventId") or "")
