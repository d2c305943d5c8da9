"""An e-mail's attachments are stored after the drain commits, read again from the
delivery as received (docs/channels.md, "E-mail attachments"), not inside the drain's
transaction: an S3 write there held the account's drain lock and the delivery's rows, and
a rollback left the file in storage, named by no row, out of an erasure's reach."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from channels_app import services
from channels_app.adapters.base import get_adapter
from channels_app.models import InboundEvent
from channels_app.services import ingest
from channels_app.tests.conftest import make_account
from tickets.models import Attachment, DownloadStatus

pytestmark = pytest.mark.django_db

FILES = [("invoice.pdf", b"%PDF-1.4 one"), ("photo.png", b"\x89PNG two"), ("notes.txt", b"three")]


def _email_body(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A SendGrid Inbound Parse POST (multipart, byte-exact) with ``files`` attached."""
    boundary = "xYzZY"
    fields = {
        "from": "Jane Doe <jane.doe@example.org>",
        "to": "support@acme.test",
        "subject": "Invoice attached",
        "text": "Please see the files.",
        "SPF": "pass",
        "dkim": "{@example.org : pass}",
        "headers": "Message-ID: <files-1@mail.example.org>\n",
    }
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for n, (filename, content) in enumerate(files, start=1):
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachment{n}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def _post(client: Client, account: Any, files: list[tuple[str, bytes]]) -> Any:
    body, content_type = _email_body(files)
    token = base64.b64encode(f"sendgrid:{account.inbound_token}".encode()).decode()
    return client.generic(
        "POST",
        account.webhook_path,
        data=body,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Basic {token}",
    )


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def test_the_attachments_are_stored_after_the_commit_from_the_delivery_parsed_once(
    client: Client, django_capture_on_commit_callbacks: Any, media_root: Path
) -> None:
    account = make_account("email")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        assert _post(client, account, FILES).status_code == 200
    with django_capture_on_commit_callbacks(execute=False) as committed:
        assert services.inbound_events_drain(account_id=account.pk).taken == 1
    # committed: the message and its attachments are recorded, no file written yet
    rows = list(Attachment.objects.order_by("pk"))
    assert [(a.filename, a.download_status, a.file.name) for a in rows] == [
        (name, DownloadStatus.PENDING, "") for name, _ in FILES
    ]
    assert _stored_files(media_root) == []
    adapter = type(get_adapter("email"))
    with mock.patch.object(adapter, "parse", autospec=True, side_effect=adapter.parse) as parse:
        for callback in committed:
            callback()  # the downloads queued at the commit (eager tasks)
    assert parse.call_count == 1  # one parse for the three files, not one each
    rows = list(Attachment.objects.order_by("pk"))
    assert [(a.download_status, a.size) for a in rows] == [
        (DownloadStatus.STORED, len(content)) for _, content in FILES
    ]
    assert [a.file.read() for a in rows] == [content for _, content in FILES]
    assert len(_stored_files(media_root)) == 3


def test_a_delivery_rolled_back_after_its_message_was_written_leaves_no_file(
    client: Client, media_root: Path
) -> None:
    account = make_account("email")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        assert _post(client, account, FILES[:1]).status_code == 200
    real = ingest._message_ingest

    def then_fail(*args: Any, **kwargs: Any) -> bool:
        real(*args, **kwargs)
        raise RuntimeError("the database went away after the message")

    with mock.patch("channels_app.services.drain._message_ingest", side_effect=then_fail):
        result = services.inbound_events_drain(account_id=account.pk)
    assert len(result.retries) == 1  # counted, to be retried
    assert not Attachment.objects.exists()
    assert _stored_files(media_root) == []  # before: the file stayed, named by no row


def test_a_file_whose_delivery_was_erased_fails_with_the_reason(
    client: Client, django_capture_on_commit_callbacks: Any, media_root: Path
) -> None:
    account = make_account("email")
    with mock.patch("channels_app.services.intake.inbound_drain_wake"):
        assert _post(client, account, FILES[:1]).status_code == 200
    with django_capture_on_commit_callbacks(execute=False) as committed:
        services.inbound_events_drain(account_id=account.pk)
    InboundEvent.objects.update(body=b"")  # what an erasure leaves of it
    for callback in committed:
        callback()
    attachment = Attachment.objects.get()
    assert attachment.download_status == DownloadStatus.FAILED
    assert "no longer kept" in attachment.download_error
    assert _stored_files(media_root) == []
