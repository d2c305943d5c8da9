"""``Idempotency-Key`` on the API's creates: a client that retries a request whose
answer it never received (a timeout, a dropped connection) sends the same key again and
gets the object its first request created, not a second one (a second ticket, or a
reply sent to the customer twice).

The key (1 to 255 printable ASCII characters) is the client's, per user: an API key's
user and all of that user's keys share them. The first request with a key records it in
the transaction that creates the object (``IdempotencyKey``: the object's id and a
fingerprint of the request), so:

- a retry after the first succeeded answers with that object (its status code, the
  answer rebuilt from the object as it is now, header ``Idempotent-Replayed: true``);
- a retry while the first is still running waits for it (the key's row is locked by the
  first transaction) and then answers as above, or creates the object if the first
  failed: a refused request (400, 403, 404...) records nothing, so it can be corrected
  and sent again with the same key;
- the same key with another request (another operation, path or body) is refused
  (**422**), as the IETF draft on the header says, rather than answered with an object
  the request did not ask for;
- an object the caller may no longer see (a ticket moved to another team) answers 409,
  not the object.

Keys are deleted ``IDEMPOTENCY_KEY_RETENTION_HOURS`` (24) after they were first used
(hourly, ``support.tasks.idempotency_keys_purge_task``); a retry after that creates
again. Without the header nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from support.errors import ApplicationError, Conflict, InvalidInput, NotFound
from support.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_CHARS = 255
_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # KEY_MAX_CHARS
_FILE_CHUNK = 1 << 16
T = TypeVar("T")


class KeyReused(ApplicationError):
    """The key was first used for another request."""

    code = "idempotency_key_reused"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


def idempotency_key_read(request: Request) -> str | None:
    """The request's key, None without the header; InvalidInput for a malformed one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidInput(
            f"{HEADER} must be 1 to {KEY_MAX_CHARS} printable ASCII characters (a UUID, say).",
            details={HEADER: ["Malformed."]},
        )
    return key


#: Form fields that are not what a request asks for: the CSRF token, the key itself.
_NOT_ASKED = {"csrfmiddlewaretoken", "submit_key"}


def request_fingerprint(request: Request | HttpRequest, operation: str) -> str:
    """SHA-256 of what the request asks for: the operation, the path, the parsed body
    (JSON: its object keys in any order; form fields in the order sent, since a repeated
    field's last value is the one read; not the CSRF token or a form's key) and any files
    (name, type, size and content, in the order sent). Uploaded files are read to the end
    and rewound. A DRF request's ``data``, a Django request's ``POST``."""
    digest = hashlib.sha256()
    for part in (operation, request.path):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    data = request.data if isinstance(request, Request) else request.POST
    if hasattr(data, "lists"):  # a form or multipart body: a QueryDict
        payload: Any = [
            (name, value)
            for name, values in data.lists()
            if name not in _NOT_ASKED
            for value in values
            if isinstance(value, str)
        ]
    else:
        payload = data
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=True)
    digest.update(text.encode() + b"\0")
    for name, files in request.FILES.lists():
        for upload in files:
            header = f"{name}\0{upload.name}\0{upload.content_type}\0{upload.size}\0"
            digest.update(header.encode("utf-8", "surrogatepass"))
            for chunk in upload.chunks(_FILE_CHUNK):
                digest.update(chunk)
            upload.seek(0)
    return digest.hexdigest()


def idempotent(
    request: Request,
    *,
    operation: str,
    create: Callable[[], tuple[int, Response]],
    replay: Callable[[int], Response],
) -> Response:
    """Run ``create`` (which answers the object's id and the response) once per key, or
    answer ``replay(object_id)`` for a key already used for this request (see the module
    docstring). ``replay`` raises ``NotFound`` for an object the caller may not see any
    more (answered 409 here). Without the header, ``create`` alone."""
    key = idempotency_key_read(request)
    if key is None:
        return create()[1]
    response, replayed = idempotent_once(
        user=request.user,
        key=key,
        fingerprint=request_fingerprint(request, operation),
        operation=operation,
        create=create,
        replay=replay,
    )
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


def idempotent_once(
    *,
    user: Any,
    key: str,
    operation: str,
    fingerprint: str,
    create: Callable[[], tuple[int, T]],
    replay: Callable[[int], T],
) -> tuple[T, bool]:
    """The API's ``Idempotency-Key`` and the workbench's form keys: ``create()`` once per
    ``user`` and ``key`` (the key recorded in its transaction), else ``replay(object_id)``
    of what the first request with the key created. True with a replay. ``KeyReused`` for
    a key first used for another request (another fingerprint), ``Conflict`` for an
    object ``replay`` no longer finds (it raised ``NotFound``)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                # waits here while another request holds the key (until it commits or not)
                row = IdempotencyKey.objects.create(
                    user=user, key=key, operation=operation, fingerprint=fingerprint
                )
        except IntegrityError:
            row = None
        if row is None:
            return _replay(user, key, operation, fingerprint, replay), True
        object_id, response = create()
        row.object_id = object_id
        row.save(update_fields=["object_id"])
        return response, False


def _replay(
    user: Any,
    key: str,
    operation: str,
    fingerprint: str,
    replay: Callable[[int], T],
) -> T:
    first = IdempotencyKey.objects.filter(user=user, key=key).first()
    if first is None:  # purged between the insert's conflict and this read (hours old)
        raise Conflict(
            f"This {HEADER} expired while the request ran; send it again.",
            details={HEADER: ["Expired."]},
        )
    if first.operation != operation or first.fingerprint != fingerprint:
        raise KeyReused(
            f"This {HEADER} was used for another request; a new request needs a new key.",
            details={HEADER: ["Used for another request."]},
        )
    try:
        # (the id is written in the transaction that records the key: never None here)
        return replay(first.object_id or 0)
    except NotFound as exc:
        raise Conflict(
            f"This {HEADER} created an object you can no longer see; a new request needs "
            "a new key.",
            details={HEADER: ["Its object is no longer visible to you."]},
        ) from exc


def idempotency_keys_purge() -> int:
    """Delete the keys first used more than ``IDEMPOTENCY_KEY_RETENTION_HOURS`` ago."""
    from support.retention import delete_in_batches

    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    return delete_in_batches(IdempotencyKey.objects.filter(created_at__lt=cutoff))
