"""The e-mail adapter's ``local_files`` transport: a reply is written as one ``.eml`` file
under ``EMAIL_FILE_PATH`` (``.devdata/mail/`` under ``make run``), the demo mailbox.

It is a transport of the real adapter, not a stand-in for one: the reply goes through the
delivery engine, the e-mail adapter's ``send`` and the same composed mail as SendGrid's
(subject with the ticket token, Message-ID, In-Reply-To, References); only the last hop
differs, and nothing leaves the machine. A reply "sent" this way never reaches a
customer, so the transport is refused under ``ENVIRONMENT=prod``: there it would hide
lost replies behind a "Sent" status.
"""

from __future__ import annotations

import os
import re
import tempfile
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage

from channels_app.adapters.base import SendResult
from channels_app.adapters.email.outgoing import OutgoingMail, files_record
from support.errors import PermanentError, RetryableError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def local_files_send(mail: OutgoingMail) -> SendResult:
    """Write ``mail`` as ``<ticket>_<Message-ID>.eml`` (atomically: a reader never sees
    half a file; a repeated send of the same reply rewrites the same file)."""
    if settings.ENVIRONMENT == "prod":
        raise PermanentError(
            "This e-mail account's transport is local_files (the demo mailbox: .eml files "
            "on this machine, nothing reaches the customer); it is refused with "
            "ENVIRONMENT=prod. Give the account a SendGrid API key and remove its "
            "'transport' setting, or deactivate it."
        )
    headers = dict(mail.headers)
    if not headers.get("Message-ID"):
        # never Django's default: it looks up this host's DNS name
        headers["Message-ID"] = make_msgid(domain=settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN)
    message = EmailMessage(
        subject=mail.subject,
        body=mail.text,
        from_email=formataddr((mail.from_name, mail.from_email)),
        to=[mail.to],
        headers=headers,
    )
    for item in mail.files:  # MIME parts of their own, base64, as a mail client attaches
        message.attach(item.filename, item.read(), item.content_type)
    try:
        data = message.message().as_bytes()
    except BadHeaderError as exc:  # a line break in a header: bad data, as SendGrid's 400
        raise PermanentError(str(exc)) from exc
    directory = Path(settings.EMAIL_FILE_PATH)
    path = directory / file_name(mail.ticket_number, headers["Message-ID"])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # a temporary file of this attempt's own: two sends of one reply at once never
        # write into each other's
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except (PermissionError, NotADirectoryError, IsADirectoryError) as exc:
        # not passing: retries would fail the same way until someone fixes the folder
        raise PermanentError(f"Could not write {path}: {exc}") from exc
    except OSError as exc:  # e.g. a full disk: may pass later
        raise RetryableError(f"Could not write {path}: {exc}") from exc
    record: dict[str, Any] = {
        "transport": "local_files",
        "file": str(path),
        "from": message.from_email,
        "to": mail.to,
        "subject": mail.subject,
        "headers": headers,
    }
    if mail.files:
        record["attachments"] = files_record(mail.files)
    return SendResult(
        external_message_id=headers["Message-ID"],
        request_body=record,
        response_body=f"written to {path}",
    )


def file_name(ticket_number: str, message_id: str) -> str:
    """``T-000123_reply-45.<uuid>@support.local.eml``: the ticket first, so a directory
    listing groups a ticket's replies; only ``[A-Za-z0-9._-]`` (no path separators)."""
    stem = _UNSAFE.sub("_", message_id.strip("<> ")).strip("._") or "message"
    if ticket_number:
        stem = f"{_UNSAFE.sub('_', ticket_number)}_{stem}"
    return f"{stem[:180]}.eml"
