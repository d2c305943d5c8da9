"""Read a source's items: a local folder, a JSONL file, or an S3 bucket and prefix.

Each reader yields ``ParsedDocument`` or ``ItemError`` (a file that could not be parsed) so
one bad file never stops a sync. boto3 calls live only here and in ``backends/bedrock.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from knowledge.models import KnowledgeSource
from knowledge.parsing import ParsedDocument, content_type_for, parse_file, parse_jsonl
from support.aws import aws_client, aws_error, aws_error_code
from support.errors import ExternalAuthError, InvalidInput, RetryableError

# Files and objects are read whole into memory, then parsed: one larger than this is a
# failed item, never read (uploads have their own, smaller limit).
SOURCE_FILE_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class ItemError:
    external_id: str
    message: str


Item = ParsedDocument | ItemError


def read_path(path: Path) -> Iterator[Item]:
    """A JSONL file (ids from its ``id`` field) or a folder (ids are relative paths)."""
    if path.is_file():
        if content_type_for(path.name) == "jsonl":
            yield from parse_jsonl(path.read_bytes(), name=path.name)
        else:
            yield _parse(path.name, path.read_bytes(), path.name)
        return
    if not path.is_dir():
        raise InvalidInput(f"path: {path} is neither a file nor a folder")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if any(part.startswith(".") for part in file.relative_to(path).parts):
            continue
        kind = content_type_for(file.name)
        if kind is None:
            continue
        size = file.stat().st_size
        if size > SOURCE_FILE_MAX_BYTES:
            yield _too_large(rel, size)
        elif kind == "jsonl":
            yield from _parse_jsonl(rel, file.read_bytes())
        else:
            yield _parse(rel, file.read_bytes(), rel)


def _too_large(name: str, size: int) -> ItemError:
    return ItemError(name, f"{name}: larger than {SOURCE_FILE_MAX_BYTES} bytes ({size} bytes)")


def _parse_jsonl(name: str, data: bytes) -> list[Item]:
    """The documents of a JSONL file inside a folder or bucket (ids ``name#id``), or one
    ``ItemError`` for the file when a line is bad: the file is read whole or not at all."""
    try:
        docs = list(parse_jsonl(data, name=name))
    except InvalidInput as exc:
        return [ItemError(name, str(exc))]
    for doc in docs:
        doc.external_id = f"{name}#{doc.external_id}"
    return list(docs)


def _parse(name: str, data: bytes, external_id: str) -> Item:
    try:
        return parse_file(name, data, external_id=external_id)
    except InvalidInput as exc:
        return ItemError(external_id, str(exc))


# --- S3 -----------------------------------------------------------------------------


def s3_client() -> Any:
    return aws_client("s3", region=settings.KB_AWS_REGION or None)


def _s3_call(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="S3") from exc


def s3_keys(source: KnowledgeSource, client: Any = None) -> Iterator[str]:
    client = client or s3_client()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": source.bucket, "Prefix": source.prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = _s3_call(client.list_objects_v2, **kwargs)
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith("/") and content_type_for(key) is not None:
                yield key
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


def s3_read_object(source: KnowledgeSource, key: str, client: Any = None) -> list[Item]:
    """Parse one object; ids are the S3 keys (``key#id`` for lines of a JSONL object).
    Nothing for an object deleted since it was listed (a full sync then deletes its
    document); a failed item for one too large or that S3 will not give (archived...; the others
    are still read); a retryable or an auth error is raised."""
    client = client or s3_client()
    try:
        response = client.get_object(Bucket=source.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        if aws_error_code(exc) in ("NoSuchKey", "404"):
            return []  # deleted since it was listed (or announced): gone, not failed
        error = aws_error(exc, context="S3")
        if isinstance(error, RetryableError | ExternalAuthError):
            raise error from exc  # the whole read stops: every object would fail alike
        return [ItemError(key, f"{key}: {error}")]  # this object only (archived...)
    size = int(response.get("ContentLength") or 0)
    if size > SOURCE_FILE_MAX_BYTES:
        response["Body"].close()
        return [_too_large(key, size)]
    body = response["Body"].read()
    name = key.rsplit("/", 1)[-1]
    if content_type_for(name) == "jsonl":
        return _parse_jsonl(key, body)
    item = _parse(name, body, key)
    if isinstance(item, ParsedDocument) and not item.url:
        item.url = f"s3://{source.bucket}/{key}"
    return [item]


def read_s3(source: KnowledgeSource, client: Any = None) -> Iterator[Item]:
    client = client or s3_client()
    for key in s3_keys(source, client):
        yield from s3_read_object(source, key, client)
