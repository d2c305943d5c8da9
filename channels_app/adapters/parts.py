"""A reply sent as several provider calls: its text, then each file.

One reply is one delivery (``channel_reply``) and one ``send`` per attempt, but on the
messaging channels a reply with files takes several calls (a message for the text; per
file an upload and a message naming it, or one call that does both). :class:`ReplyParts`
runs them for an adapter:

- each part's progress is recorded as soon as the provider accepted it
  (``channels_app.services.reply_parts``, on the reply's ``Message.metadata``), so a
  retried delivery skips what the customer already has and reuses an upload the provider
  still keeps instead of uploading the bytes twice;
- every call of the attempt is summarised (part, step, the request without the file's
  bytes, HTTP status, the start of the answer): on success in the ``SendResult`` the engine
  records on the attempt; on failure in the error's ``response_text`` (the attempt's
  response summary), with a message in words that names the file and the provider's
  own explanation;
- an upload made in several calls (X's chunked upload of a video: initialize, append per
  segment, finalize, the status while X processes it) records its progress on the part as
  it goes (:meth:`ReplyParts.record`, read back by :meth:`ReplyParts.progress`), so the
  next attempt resumes it instead of sending the bytes again;
- failures keep their kind (``RetryableError`` / ``PermanentError`` from ``http_call``, with
  ``http_status``; one the adapter reads in a 2xx answer is told the same way by
  :meth:`ReplyParts.told`, with its ``retry_after``): no retry loop here, the engine retries
  the delivery.

Files a channel cannot take are refused before anything is sent (:func:`files_check`), so a
reply is never half sent for a reason known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import requests
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app.adapters.base import (
    OutboundFile,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    provider_message,
)
from channels_app.adapters.limits import reply_limits_problems
from support.delivery.registry import possibly_sent
from support.errors import PermanentError, RetryableError

TEXT_PART = "text"
#: The id recorded for a part the provider took (2xx) without naming its message: sent,
#: never sent again, and never the reply's channel message id.
SENT_NO_ID = "sent:no-id"
PART_NOT_RECORDED_CODE = "reply_part_not_recorded"
NO_MESSAGE_ID_NOTE = "the answer named no message id"
#: One part's call: its summary for the attempt (never a file's bytes) and the call.
PartRequest = tuple[dict[str, Any], Callable[[], requests.Response]]
FILE_REFUSED_CODE = "reply_file_refused"
SUMMARY_MAX = 2000
_E = TypeVar("_E", bound=Exception)


def file_part(file: OutboundFile) -> str:
    return f"file:{file.attachment_id}"


def file_summary(file: OutboundFile) -> dict[str, Any]:
    """What a request summary says of a file: never its bytes."""
    return {
        "attachment_id": file.attachment_id,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
    }


def files_check(
    label: str,
    files: tuple[OutboundFile, ...],
    limits: ReplyLimits,
    *,
    more: Callable[[OutboundFile], str] | None = None,
) -> None:
    """Refuse (``PermanentError``, code ``reply_file_refused``) before anything is sent a
    reply whose files the channel cannot take: the same rules and words as the check before
    the send (``channels_app.adapters.limits.reply_limits_problems``); ``more`` adds a
    channel's own rule (a sentence in words, or "")."""
    if not files:
        return
    problems = list(
        reply_limits_problems(limits, label=label, text="", files=files).get("files", [])
    )
    if limits.files and more is not None:
        problems += [_sentence(problem) for file in files if (problem := more(file))]
    if problems:
        error = PermanentError(" ".join(problems), error_code=FILE_REFUSED_CODE)
        raise error


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


class ReplyParts:
    """The parts of one reply for one ``send`` (see the module docstring)."""

    def __init__(self, label: str, outbound: OutboundRequest) -> None:
        # imported here: the adapters load before the services package that imports them
        from channels_app.selectors import reply_parts_get

        self.label = label
        self.message_id = outbound.message_id
        self.recorded = reply_parts_get(message_id=outbound.message_id)
        self.ids: list[str] = []  # the provider's message ids, in the reply's order
        self.log: list[dict[str, Any]] = []  # every part and call of this attempt
        self.last_status: int | None = None
        self.names: dict[str, str] = {}  # part → the part in words

    # --- what earlier attempts did -----------------------------------------------------

    def sent_id(self, part: str, what: str) -> str:
        """The provider's id of ``part`` when an earlier attempt sent it (``SENT_NO_ID``
        when the provider named none), "" otherwise."""
        self.names[part] = what
        sent = str(self.recorded.get(part, {}).get("id", ""))
        if sent:
            if sent != SENT_NO_ID:
                self.ids.append(sent)
            self.log.append({"part": part, "skipped": "sent by an earlier attempt", "id": sent})
        return sent

    def uploaded_id(self, part: str, *, kept_for: timedelta) -> str:
        """The media id an earlier attempt uploaded for ``part``, while the provider still
        keeps it (``kept_for`` after the upload, less a margin); "" otherwise."""
        record = self.recorded.get(part, {})
        media_id = str(record.get("media_id", ""))
        at = parse_datetime(str(record.get("uploaded_at", "")))
        if not media_id or at is None or timezone.now() - at > kept_for:
            return ""
        self.log.append({"part": part, "step": "upload", "skipped": "uploaded before"})
        return media_id

    # --- calls and progress -------------------------------------------------------------

    def call(
        self,
        part: str,
        step: str,
        what: str,
        request: dict[str, Any],
        send: Callable[[], requests.Response],
    ) -> requests.Response:
        """Make one provider call for ``part`` (``step``: "upload" or "send"; ``what``: the
        part in words, e.g. 'the file “a.pdf”'), summarised whatever happens."""
        self.names[part] = what
        entry: dict[str, Any] = {"part": part, "step": step, "request": request}
        self.log.append(entry)
        try:
            response = send()
        except (RetryableError, PermanentError) as exc:
            entry["http_status"] = getattr(exc, "http_status", None)
            entry["error"] = str(exc)[:300]
            if step != "send":  # an upload sent twice is never seen twice by the customer
                possibly_sent(exc, maybe=False)
            raise self._failed(exc, step, what) from None
        self.last_status = response.status_code
        entry["http_status"] = response.status_code
        entry["response"] = response.text[:300]
        unread = getattr(response, "answer_unread", "")
        if unread and step != "send":  # the upload's id is in the answer: upload again
            entry["error"] = f"the answer could not be read: {unread}"[:300]
            error = RetryableError(f"The answer to the upload could not be read ({unread}).")
            raise self._failed(error, step, what) from None
        return response

    def progress(self, part: str) -> dict[str, str]:
        """What earlier attempts recorded of ``part`` (an upload in several calls keeps its
        progress here, :meth:`record`)."""
        return {key: str(value) for key, value in self.recorded.get(part, {}).items()}

    def record(self, part: str, **values: str) -> None:
        """Record ``values`` of ``part`` at once: the progress of an upload made in several
        calls (a provider's upload id, the segments it took), which a later attempt
        resumes instead of sending the bytes again."""
        from channels_app.services.reply_parts import reply_part_record

        reply_part_record(message_id=self.message_id, part=part, **values)
        self.recorded.setdefault(part, {}).update(values)

    def uploaded(self, part: str, media_id: str) -> None:
        self.record(part, media_id=media_id, uploaded_at=timezone.now().isoformat())

    def sent(self, part: str, message_id: str) -> None:
        """Record ``part`` as sent (the provider answered 2xx), by its id, or
        ``SENT_NO_ID`` when the answer named none: it counts as sent all the same, so a
        retry never sends it again. When the record itself fails (the database went away)
        the attempt stops with a permanent error marked as a possible duplicate
        (``support.delivery.registry.possibly_sent``): retrying would send the part the
        customer already has again, unseen."""
        try:
            self.record(part, id=message_id or SENT_NO_ID)
        except DatabaseError as exc:
            what = self.names.get(part, part)
            error = PermanentError(
                f"{self.label} took {what}, but it could not be recorded as sent "
                f"({type(exc).__name__}: {exc}); stopped so as not to send it twice.",
                error_code=PART_NOT_RECORDED_CODE,
                http_status=self.last_status,
            )
            head = str(error) + (
                " A re-drive sends again what is not recorded as sent, this part included."
            )
            raise possibly_sent(self.told(error, head)) from exc
        if message_id:
            self.ids.append(message_id)
        else:
            calls = [entry for entry in self.log if entry.get("part") == part]
            if calls:
                calls[-1]["note"] = NO_MESSAGE_ID_NOTE

    def send_each(
        self,
        outbound: OutboundRequest,
        *,
        text: Callable[[], PartRequest],
        file: Callable[[OutboundFile, str, str], PartRequest],
        sent_id: Callable[[requests.Response], str],
    ) -> SendResult:
        """Send the reply part by part: the text as a message of its own (first, so the
        customer reads it before the files), then each file in the order attached. ``text``
        and ``file`` (given the file, its part and the part in words; it may upload first,
        through :meth:`media_id`) build one part's call and its summary; ``sent_id`` reads
        the provider's message id from the answer. Parts an earlier attempt sent are
        skipped; each part is recorded as soon as the provider took it."""
        if outbound.text.strip() and not self.sent_id(TEXT_PART, "the text"):
            summary, call = text()
            response = self.call(TEXT_PART, "send", "the text", summary, call)
            self.sent(TEXT_PART, sent_id(response))
        for item in outbound.files:
            part, what = file_part(item), f"the file “{item.filename}”"
            if self.sent_id(part, what):
                continue
            summary, call = file(item, part, what)
            self.sent(part, sent_id(self.call(part, "send", what, summary, call)))
        return self.result()

    def media_id(self, part: str, *, kept_for: timedelta, upload: Callable[[], str]) -> str:
        """The provider's media id for ``part``: an earlier attempt's upload while the
        provider keeps it, else ``upload()`` now (recorded at once)."""
        media_id = self.uploaded_id(part, kept_for=kept_for)
        if not media_id:
            media_id = upload()
            self.uploaded(part, media_id)
        return media_id

    def result(self) -> SendResult:
        """The attempt as the engine records it: the first part's id names the reply
        (status webhooks for it find the message)."""
        return SendResult(
            external_message_id=self.ids[0] if self.ids else "",
            http_status=self.last_status,
            request_body={"parts": self.log},
            response_body=self._summary(),
        )

    def _summary(self) -> str:
        return json.dumps(self.log, ensure_ascii=False, default=str)[:SUMMARY_MAX]

    def _failed(
        self, exc: RetryableError | PermanentError, step: str, what: str
    ) -> RetryableError | PermanentError:
        """The same error (kind, HTTP status, ``Retry-After``, code), told in words, with
        every call of the attempt as its response summary."""
        status = getattr(exc, "http_status", None)
        answer = getattr(exc, "response_text", "")
        # an error the adapter already told in words (a code of its own: X's refused
        # token names the account and the fix) keeps them; else the provider's own
        because = (
            provider_message(answer) if answer and not getattr(exc, "error_code", "") else str(exc)
        )
        because = because.strip()
        if not because.endswith((".", "!", "?")):
            because += "."
        # every step but the message itself belongs to the upload (an upload in several
        # calls: initialize, append, finalize, status)
        doing = "the message with" if step == "send" else "the upload of"
        if status is None:  # no answer: a timeout, a connection error
            head = f"{self.label}: {doing} {what} failed: {because}"
        else:
            verb = "refused" if 400 <= status < 500 else "did not take"
            head = f"{self.label} {verb} {doing} {what} (HTTP {status}): {because}"
        return self.told(exc, head)

    def told(self, exc: _E, head: str) -> _E:
        """``exc`` (its kind, ``retry_after`` and code kept) with ``head`` as its message
        (what happened, in words naming the part), what earlier parts already sent, and
        every call of the attempt as its response summary: for a failure the adapter
        finds in an answer the provider gave with 2xx (a media X could not process)."""
        done = [
            self.names.get(part, part) for part, record in self.recorded.items() if record.get("id")
        ]
        if done:
            head += f" Already sent, not sent again: {', '.join(done)}."
        exc.args = (head,)
        exc.response_text = self._summary()  # type: ignore[attr-defined]
        return exc
