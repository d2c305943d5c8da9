"""Files on e-mail replies: SendGrid v3 Mail Send ``attachments`` (base64 ``content``,
``type``, ``filename``, ``disposition``) and MIME parts of the local ``.eml`` writer; the
delivery's record names the files, never their bytes."""

from __future__ import annotations

import base64
import email
import json
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast

import pytest
import responses

from channels_app.adapters.base import OutboundFile, OutboundRequest, get_adapter
from channels_app.adapters.email.adapter import REPLY_FILES_MAX_BYTES
from channels_app.tests.conftest import make_account
from support.delivery.models import Attempt
from support.errors import InvalidInput, PermanentError
from tickets.models import Customer, Message
from tickets.services import NewAttachment, message_add, ticket_create

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
PDF = b"%PDF-1.4 invoice \x00\xff"
PNG = b"\x89PNG\r\n\x1a\n label"


def files() -> list[NewAttachment]:
    return [
        NewAttachment("invoice.pdf", "application/pdf", PDF, kind="document"),
        NewAttachment("label.png", "image/png", PNG, kind="image"),
    ]


def send_reply(customer: Customer, agent: Any, capture: Any) -> Message:
    ticket = ticket_create(customer=customer, subject="Order 77", body="Hi", channel="api")
    with capture(execute=True):
        return message_add(
            ticket=ticket, body="Your invoice and label.", author_user=agent, attachments=files()
        )


@responses.activate
def test_sendgrid_gets_the_files_as_attachments_and_the_record_keeps_no_bytes(
    customer: Customer,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    make_account("email")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    message = send_reply(customer, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body or b"")
    assert sent["content"] == [{"type": "text/plain", "value": "Your invoice and label."}]
    assert sent["attachments"] == [
        {
            "content": base64.b64encode(PDF).decode(),
            "type": "application/pdf",
            "filename": "invoice.pdf",
            "disposition": "attachment",
        },
        {
            "content": base64.b64encode(PNG).decode(),
            "type": "image/png",
            "filename": "label.png",
            "disposition": "attachment",
        },
    ]
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    attempt = Attempt.objects.get()
    assert attempt.request_summary["attachments"] == [
        {"filename": "invoice.pdf", "type": "application/pdf", "size": len(PDF)},
        {"filename": "label.png", "type": "image/png", "size": len(PNG)},
    ]
    assert base64.b64encode(PDF).decode() not in json.dumps(attempt.request_summary)


def test_the_local_mailbox_writes_the_files_as_mime_parts(
    customer: Customer,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    account = make_account("email")
    account.settings = {"transport": "local_files"}
    account.save()
    message = send_reply(customer, agent, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.delivery_status == "sent", message.delivery_error
    [path] = (tmp_path / "mail").iterdir()
    mail = cast(EmailMessage, email.message_from_bytes(path.read_bytes(), policy=default_policy))
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Your invoice and label."
    parts = [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in mail.iter_attachments()
    ]
    assert parts == [("invoice.pdf", "application/pdf", PDF), ("label.png", "image/png", PNG)]
    assert Attempt.objects.get().request_summary["attachments"] == [
        {"filename": "invoice.pdf", "type": "application/pdf", "size": len(PDF)},
        {"filename": "label.png", "type": "image/png", "size": len(PNG)},
    ]


def test_email_replies_take_files_up_to_a_total_below_sendgrids(
    customer: Customer, agent: Any, settings: Any
) -> None:
    """20 MB of files is under SendGrid's 30 MB once base64 grows it by a third."""
    limits = get_adapter("email").reply_limits
    assert limits.files
    assert limits.files_max_total_bytes == REPLY_FILES_MAX_BYTES == 20_000_000
    assert (REPLY_FILES_MAX_BYTES + 2) // 3 * 4 < 30_000_000
    settings.TICKET_REPLY_FILES_MAX_BYTES = 40_000_000  # raised by an operator
    ticket = ticket_create(customer=customer, subject="Big", body="Hi", channel="email")
    big = [NewAttachment(f"part{i}.pdf", "application/pdf", b"x" * 8_000_000) for i in range(3)]
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="Three parts", author_user=agent, attachments=big)
    assert refused.value.details == {
        "files": ["Email replies can carry at most 20 MB of files together; these are 24 MB."]
    }


def test_sendgrid_is_never_asked_for_more_than_its_total(settings: Any) -> None:
    """A reply queued before a limit changed: refused in words, no request made."""
    account = make_account("email")
    huge = OutboundFile(
        attachment_id=1,
        filename="huge.bin",
        content_type="application/octet-stream",
        size=23_000_000,
        kind="other",
        read=lambda: b"\x00" * 23_000_000,
        public_url=lambda: "",
    )
    outbound = OutboundRequest(
        message_id=1,
        ticket_id=1,
        ticket_number="T-000001",
        recipient_id="ada@example.com",
        text="Big",
        files=(huge,),
    )
    with responses.RequestsMock() as mocked, pytest.raises(PermanentError) as refused:
        get_adapter("email").send(account, outbound)
    assert len(mocked.calls) == 0
    assert "SendGrid takes less than 30,000,000 bytes a message" in str(refused.value)


@responses.activate
def test_a_file_no_longer_stored_fails_the_reply_in_words_not_as_an_unexpected_error(
    customer: Customer,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
    settings: Any,
) -> None:
    """The stored file gone before the send (storage cleaned, a restore without media):
    reading it raised FileNotFoundError, which the delivery engine retried as an unexpected
    error until its attempts ran out, and the agent read "Failed: FileNotFoundError: [Errno 2]
    … /srv/…/invoice.pdf" (a server path).
    Now the reply fails saying which file in words, and nothing is sent."""
    from support.delivery.models import Delivery

    settings.MEDIA_ROOT = tmp_path
    make_account("email")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    ticket = ticket_create(customer=customer, subject="Order 77", body="Hi", channel="api")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = message_add(
            ticket=ticket, body="Your invoice and label.", author_user=agent, attachments=files()
        )
    Path(message.attachments.get(filename="invoice.pdf").file.path).unlink()
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()
    assert len(responses.calls) == 0
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    delivery = Delivery.objects.get()
    assert delivery.status == "dead"
    assert "“invoice.pdf” of this reply is no longer stored" in delivery.last_error
