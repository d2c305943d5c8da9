"""Which S3 objects call analytics may read or hand to AWS services.

Call events name S3 objects (recordings, notified audio, transcription results) that the
worker then reads, or passes to Transcribe / Data Automation, with its own IAM role. Only
locations in the allow-list are accepted:

* ``CALLS_ALLOWED_S3_BUCKETS``: comma-separated entries ``bucket`` (any key) or
  ``bucket/prefix`` (keys starting with ``prefix``, compared literally as S3 and IAM do,
  so end a folder prefix with ``/``);
* when it is empty: the configured call buckets, ``CALLS_RECORDINGS_BUCKET`` and
  ``CALLS_OUTPUT_BUCKET`` (whole buckets). With neither set nothing is allowed.

Read at call time (settings can change in tests and per process).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from support.errors import InvalidInput


class S3LocationRefused(InvalidInput):
    """An event names an S3 object outside the allow-list: that record is stored as a failed
    event and never read; a body whose records are all refused is answered 400."""

    code = "s3_location_not_allowed"


def _parse_entry(entry: str) -> tuple[str, str] | None:
    text = entry.strip().removeprefix("s3://")
    bucket, _, prefix = text.partition("/")
    return (bucket, prefix) if bucket else None


def allowed_s3_locations(extra: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(bucket, key prefix) pairs; an empty prefix allows the whole bucket."""
    entries = list(settings.CALLS_ALLOWED_S3_BUCKETS) or [
        name for name in (settings.CALLS_RECORDINGS_BUCKET, settings.CALLS_OUTPUT_BUCKET) if name
    ]
    parsed = (_parse_entry(entry) for entry in [*entries, *extra])
    return [pair for pair in parsed if pair is not None]


def s3_uri_allowed(uri: str, *, extra: Iterable[str] = ()) -> bool:
    """Whether ``s3://bucket/key`` is inside the allow-list (malformed URIs are not)."""
    if not uri.startswith("s3://"):
        return False
    bucket, sep, key = uri[5:].partition("/")
    if not bucket or not sep or not key:
        return False
    return any(
        bucket == allowed and key.startswith(prefix)
        for allowed, prefix in allowed_s3_locations(extra)
    )


def s3_uri_check(uri: str) -> None:
    """Raise :class:`S3LocationRefused` unless ``uri`` is allowed (used before every read
    and before handing a recording to Transcribe or Data Automation)."""
    if not s3_uri_allowed(uri):
        raise S3LocationRefused(
            f"{uri} is outside CALLS_ALLOWED_S3_BUCKETS.", details={"s3_uri": [uri]}
        )
