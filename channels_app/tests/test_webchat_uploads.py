"""Files a web chat visitor sends (``POST /api/webchat/<token>/files``): refused before
the body is read when too large, for its own session only, rate limited, safe types
only; stored before the 202, then made a message with its ``Attachment`` by the drain,
once; shown to agents like any inbound file and re-downloadable by the visitor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from channels_app.adapters.webchat.adapter import UPLOAD_ROOT, session_issue
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.services import inbound_event_process
from channels_app.tests.conftest import make_account
from tickets.models import Attachment, Message, Ticket

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4 a broken kettle"


@pytest.fixture
def account(settings: Any, tmp_path: Path) -> ChannelAccount:
    settings.MEDIA_ROOT = tmp_path
    return make_account("webchat")


@pytest.fixture
def session(account: ChannelAccount) -> str:
    return str(session_issue(account, name="Vera", email="vera@example.com")["session"])


def url(account: ChannelAccount) -> str:
    return f"/api/webchat/{account.webhook_token}/files"


def upload(
    client: Client,
    account: ChannelAccount,
    session: str | None,
    *,
    name: str = "kettle.png",
    content: bytes = PNG,
    text: str = "It arrived broken",
    client_id: str = "client-file-0001",
) -> Any:
    headers: dict[str, Any] = {"HTTP_X_WEBCHAT_SESSION": session} if session is not None else {}
    return client.post(
        url(account),
        {"file": SimpleUploadedFile(name, content), "text": text, "client_id": client_id},
        **headers,
    )


def stored_uploads(root: Path) -> list[Path]:
    return [p for p in (root / UPLOAD_ROOT).rglob("*") if p.is_file()]


def test_the_file_becomes_a_message_with_its_attachment(
    client: Client,
    account: ChannelAccount,
    session: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, account, session)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    assert response["Access-Control-Allow-Origin"] == "*"
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.PROCESSED
    [message] = Message.objects.all()
    assert message.direction == "inbound"
    assert message.body_text == "It arrived broken"
    assert message.ticket.channel == "webchat"
    [attachment] = message.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.kind) == (
        "kettle.png",
        "image/png",
        "image",
    )
    assert attachment.file.read() == PNG
    # the visitor sees it in its conversation and can fetch it again, with its own session
    polled = client.get(
        f"/api/webchat/{account.webhook_token}/messages", HTTP_X_WEBCHAT_SESSION=session
    ).json()["messages"]
    assert polled[0]["files"] == [
        {"id": attachment.pk, "name": "kettle.png", "type": "image/png", "size": len(PNG)}
    ]
    again = client.get(
        f"/api/webchat/{account.webhook_token}/files/{attachment.pk}",
        HTTP_X_WEBCHAT_SESSION=session,
    )
    assert again.status_code == 200
    assert b"".join(again.streaming_content) == PNG  # type: ignore[attr-defined]
    assert again["Content-Disposition"].startswith("attachment;")
    # another visitor of the same widget cannot
    other = session_issue(account, name="Eve", email="eve@example.com")["session"]
    assert (
        client.get(
            f"/api/webchat/{account.webhook_token}/files/{attachment.pk}",
            HTTP_X_WEBCHAT_SESSION=other,
        ).status_code
        == 404
    )


def test_a_file_alone_needs_no_text(
    client: Client,
    account: ChannelAccount,
    session: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, account, session, name="label.pdf", content=PDF, text="")
    assert response.status_code == 202
    ticket = Ticket.objects.get()
    assert ticket.subject == "Web chat: label.pdf"
    [attachment] = Attachment.objects.all()
    assert (attachment.content_type, attachment.kind) == ("application/pdf", "document")


def test_the_file_is_stored_before_the_acknowledgement(
    client: Client,
    account: ChannelAccount,
    session: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Acknowledged with the drain not run yet (its task lost, the worker down): the bytes
    are already in storage and the event names them, so the drain can make the message
    whenever it runs."""
    response = upload(client, account, session)  # on-commit callbacks not run
    assert response.status_code == 202
    [stored] = stored_uploads(tmp_path)
    assert stored.read_bytes() == PNG
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.RECEIVED
    assert not Message.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        inbound_event_process(event_id=event.pk)
    assert Attachment.objects.get().file.read() == PNG
    assert stored_uploads(tmp_path) == []  # one copy: the attachment's


def test_a_redrained_event_and_a_repeated_upload_add_nothing(
    client: Client,
    account: ChannelAccount,
    session: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(client, account, session).status_code == 202
    event = InboundEvent.objects.get()
    # staff re-drive the event: it is processed again, and finds its message recorded
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundStatus.RECEIVED)
    inbound_event_process(event_id=event.pk)
    # the widget retries the same upload (same client id): the same event, nothing stored
    with django_capture_on_commit_callbacks(execute=True):
        again = upload(client, account, session)
    assert again.status_code == 202
    assert again.json() == {"status": "duplicate", "id": event.pk, "client_id": "client-file-0001"}
    assert (Message.objects.count(), Attachment.objects.count()) == (1, 1)
    assert InboundEvent.objects.count() == 1
    # the staged copy went once the attachment held its own; the attachment is kept
    assert stored_uploads(tmp_path) == []
    assert Attachment.objects.get().file.read() == PNG


def test_too_large_by_its_content_length_is_refused_before_reading(
    client: Client, account: ChannelAccount, session: str, settings: Any, tmp_path: Path
) -> None:
    settings.WEBCHAT_UPLOAD_MAX_BYTES = 1000
    with mock.patch("django.http.request.HttpRequest.read") as read:
        response = client.post(
            url(account),
            b"x" * 10,
            content_type="multipart/form-data; boundary=b",
            HTTP_X_WEBCHAT_SESSION=session,
            CONTENT_LENGTH="1001",
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    read.assert_not_called()
    # a real file over the cap, too
    response = upload(client, account, session, content=PNG + b"\x00" * 1000)
    assert response.status_code == 413
    assert not InboundEvent.objects.exists()
    assert not (tmp_path / UPLOAD_ROOT).exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>"),
        ("page.html", b"<html><script>alert(1)</script></html>"),
        ("page.htm", b"<html></html>"),
        ("tool.exe", b"MZ\x90\x00"),
        ("script.js", b"alert(1)"),
        ("no-extension", PNG),
        ("fake.png", b"<html><script>alert(1)</script></html>"),  # a page named .png
        ("fake.pdf", PNG),
        ("binary.txt", b"MZ\x90\x00\x00"),
        ("fake.webp", b"RIFF\x00\x00\x00\x00AVI "),
    ],
)
def test_unsafe_types_are_refused(
    client: Client,
    account: ChannelAccount,
    session: str,
    tmp_path: Path,
    name: str,
    content: bytes,
) -> None:
    response = upload(client, account, session, name=name, content=content)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "malformed_payload"
    assert "cannot be sent" in error["message"]
    assert not InboundEvent.objects.exists()
    assert not (tmp_path / UPLOAD_ROOT).exists()


def test_an_empty_file_or_no_file_is_refused(
    client: Client, account: ChannelAccount, session: str
) -> None:
    response = upload(client, account, session, content=b"")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The file is empty."
    response = client.post(url(account), {"text": "hi"}, HTTP_X_WEBCHAT_SESSION=session)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Send one file in the 'file' field."
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize("client_id", ["client\tid-0001", "cl\u00efent-id-0002", "short"])
def test_a_client_id_the_message_would_refuse_stores_no_file(
    client: Client, account: ChannelAccount, session: str, tmp_path: Path, client_id: str
) -> None:
    """The message's rule for its id is checked before the file is stored: before, a tab
    or a non-ASCII letter passed the upload's own check, the file was stored, and the
    message refused it (a 400 all the same, a file left in storage and a malformed event)."""
    response = upload(client, account, session, client_id=client_id)
    assert response.status_code == 400
    assert "'client_id'" in response.json()["error"]["message"]
    assert stored_uploads(tmp_path) == []
    assert not InboundEvent.objects.exists()


def test_the_file_name_is_made_safe(
    client: Client,
    account: ChannelAccount,
    session: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, account, session, name="../../etc/\u202ekettle.png")
    assert response.status_code == 202
    assert Attachment.objects.get().filename == "kettle.png"


def test_no_forged_or_expired_session_is_refused(
    client: Client, account: ChannelAccount, session: str, settings: Any
) -> None:
    assert upload(client, account, None).status_code == 401
    assert upload(client, account, session + "x").status_code == 403
    other_widget = make_account("webchat", name="other")
    foreign = session_issue(other_widget, name="Eve", email="eve@example.com")["session"]
    assert upload(client, account, foreign).status_code == 403
    unknown = client.post(
        "/api/webchat/no-such-widget/files",
        {"file": SimpleUploadedFile("a.png", PNG)},
        HTTP_X_WEBCHAT_SESSION=session,
    )
    assert unknown.status_code == 404
    settings.WEBCHAT_SESSION_TTL_SECONDS = 0
    with mock.patch("time.time", return_value=10**10):
        expired = upload(client, account, session)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "session_expired"
    assert not InboundEvent.objects.exists()


def test_uploads_are_rate_limited_per_session_and_address(
    client: Client, account: ChannelAccount, session: str, settings: Any
) -> None:
    settings.WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR = 2
    codes = [
        upload(client, account, session, client_id=f"client-file-{i:04}").status_code
        for i in range(3)
    ]
    assert codes == [202, 202, 429]
    refused = upload(client, account, session, client_id="client-file-9999")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused["Retry-After"]) > 0
    # a new session from the same address: the address's hourly limit
    settings.WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR = 20
    settings.WEBCHAT_UPLOADS_PER_IP_PER_HOUR = 2  # two accepted already
    fresh = session_issue(account, name="Vera", email="vera@example.com")["session"]
    assert upload(client, account, fresh, client_id="client-file-0100").status_code == 429
    assert InboundEvent.objects.count() == 2


def test_a_body_naming_another_visitors_file_gets_no_file(
    client: Client,
    account: ChannelAccount,
    session: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A message posted straight to the webhook may name a stored upload: only one under
    the sender's own prefix is ever read."""
    assert upload(client, account, session).status_code == 202  # not drained yet
    key = json.loads(bytes(InboundEvent.objects.get().body))["file"]["key"]
    assert default_storage.exists(key)
    eve = session_issue(account, name="Eve", email="eve@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            {"client_id": "eve-00000001", "text": "", "file": {"key": key, "name": "x.png"}},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=eve,
        )
    assert sent.status_code == 200
    eves = Message.objects.get(channel_message_id__endswith=":eve-00000001")
    assert not eves.attachments.exists()
    assert eves.metadata["file_missing"] == "x.png"
    # the drain made Vera's message meanwhile, with her file
    [attachment] = Attachment.objects.all()
    assert str(attachment.message.channel_message_id).endswith(":client-file-0001")


def test_the_agent_sees_the_picture_on_the_ticket(
    client: Client,
    account: ChannelAccount,
    session: str,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(client, account, session).status_code == 202
    attachment = Attachment.objects.get()
    ticket = Ticket.objects.get()
    agent_client = Client()
    agent_client.force_login(agent)
    page = agent_client.get(f"/tickets/{ticket.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<img src="/attachments/{attachment.pk}"' in html
    served = agent_client.get(f"/attachments/{attachment.pk}")
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"


def test_the_name_keeps_its_checked_extension(
    client: Client,
    account: ChannelAccount,
    session: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The visitor's name is kept (spaces included, which storage may change in its own
    name), but a message posted to the webhook naming the upload "page.html" gets the
    name checked at upload."""
    assert upload(client, account, session, name="my kettle.png").status_code == 202
    key = json.loads(bytes(InboundEvent.objects.get().body))["file"]["key"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            {"client_id": "client-renamed-01", "file": {"key": key, "name": "page.html"}},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=session,
        )
    assert sent.status_code == 200
    names = dict(Attachment.objects.values_list("message__channel_message_id", "filename"))
    stored = key.rpartition("/")[2]
    assert stored.endswith(".png")
    assert {str(k).partition(":")[2]: v for k, v in names.items()} == {
        "client-file-0001": "my kettle.png",
        "client-renamed-01": stored,
    }
    assert set(Attachment.objects.values_list("content_type", flat=True)) == {"image/png"}
