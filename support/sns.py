"""Amazon SNS message freshness, shared by every intake that accepts SNS messages over HTTP.

A signed SNS message stays verifiable forever, so without an age limit anyone who saw one
(a log, a proxy) could post it again. SNS delivers within seconds and retries over HTTP
for at most an hour by default, so a message whose ``Timestamp`` is older than
``SNS_MAX_AGE_SECONDS`` (one hour) is refused. Messages read from SQS are not checked:
the queue is authenticated by IAM, and a backlog after an outage is legitimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

FUTURE_SKEW = timedelta(minutes=5)


class StaleMessage(ValueError):
    """The SNS message's Timestamp is missing, malformed, too old or in the future."""


def sns_max_age_seconds() -> int:
    return int(getattr(settings, "SNS_MAX_AGE_SECONDS", 3600))


def sns_timestamp_check(message: Mapping[str, Any], *, now: datetime | None = None) -> None:
    """Raise :class:`StaleMessage` unless ``message["Timestamp"]`` is recent."""
    raw = str(message.get("Timestamp") or "")
    try:
        sent = datetime.fromisoformat(raw)
    except ValueError:
        raise StaleMessage(f"SNS Timestamp {raw[:40]!r} is missing or not ISO 8601.") from None
    if sent.tzinfo is None:
        raise StaleMessage(f"SNS Timestamp {raw!r} has no time zone.")
    age = (now or datetime.now(UTC)) - sent
    limit = sns_max_age_seconds()
    if age > timedelta(seconds=limit):
        raise StaleMessage(
            f"The SNS message is {int(age.total_seconds())} s old; messages older than "
            f"{limit} s are refused (SNS_MAX_AGE_SECONDS)."
        )
    if age < -FUTURE_SKEW:
        raise StaleMessage(f"SNS Timestamp {raw!r} is in the future.")
