"""Files an agent sends to a web chat visitor: pushed and polled with the reply, opened
only with the visitor's own session (``GET /api/webchat/<token>/files/<id>``); anything
else is the same 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from tickets.models import Attachment, Message, Ticket
from tickets.services import NewAttachment, message_add

pytestmark = pytest.mark.django_db

LABEL = b"%PDF-1.4 return label"


def start(client: Client, account: ChannelAccount, text: str = "Hi there") -> str:
    started = client.post(
        f"/api/webchat/{account.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    assert started.status_code == 201
    session = str(started.json()["session"])
    sent = client.post(
        started.json()["messages_url"],
        data={"text": text, "client_id": "client-0001"},
        content_type="application/json",
        HTTP_X_WEBCHAT_SESSION=session,
    )
    assert sent.status_code == 200
    return session


@pytest.fixture
def chat(
    client: Client,
    agent: Any,
    tmp_path: Path,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> dict[str, Any]:
    settings.MEDIA_ROOT = tmp_path
    account = make_account("webchat")
    with django_capture_on_commit_callbacks(execute=True):
        session = start(client, account)
    ticket = Ticket.objects.get()
    with (
        mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer") as layer,
        django_capture_on_commit_callbacks(execute=True),
    ):
        layer.return_value.group_send = mock.AsyncMock()
        reply = message_add(
            ticket=ticket,
            body="Here is your label.",
            author_user=agent,
            attachments=[NewAttachment("label.pdf", "application/pdf", LABEL, kind="document")],
        )
    [attachment] = reply.attachments.all()
    return {
        "account": account,
        "session": session,
        "ticket": ticket,
        "reply": reply,
        "attachment": attachment,
        "pushed": layer.return_value.group_send.await_args.args[1]["message"],
    }


def file_url(account: ChannelAccount, attachment_id: int) -> str:
    return f"/api/webchat/{account.webhook_token}/files/{attachment_id}"


def test_the_visitor_gets_the_file_with_its_own_session(
    client: Client, chat: dict[str, Any]
) -> None:
    attachment: Attachment = chat["attachment"]
    reply: Message = chat["reply"]
    reply.refresh_from_db()
    assert reply.delivery_status == "delivered"
    described = {"id": attachment.pk, "name": "label.pdf", "type": "application/pdf", "size": 21}
    assert chat["pushed"]["files"] == [described]
    polled = client.get(
        f"/api/webchat/{chat['account'].webhook_token}/messages",
        HTTP_X_WEBCHAT_SESSION=chat["session"],
    )
    assert [m.get("files") for m in polled.json()["messages"]] == [[], [described]]
    response = client.get(
        file_url(chat["account"], attachment.pk), HTTP_X_WEBCHAT_SESSION=chat["session"]
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == LABEL  # type: ignore[attr-defined]
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="label.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"


def test_anything_else_is_the_same_404(
    client: Client, chat: dict[str, Any], agent: Any, settings: Any
) -> None:
    account, attachment = chat["account"], chat["attachment"]
    url = file_url(account, attachment.pk)
    ticket: Ticket = chat["ticket"]

    def status(url: str, session: str | None) -> int:
        if session is None:
            return client.get(url).status_code
        return client.get(url, HTTP_X_WEBCHAT_SESSION=session).status_code

    assert status(url, None) == 404  # no session
    assert status(url, "forged") == 404
    other_widget = make_account("webchat", name="other")
    assert status(file_url(other_widget, attachment.pk), chat["session"]) == 404
    # another visitor of the same widget
    assert status(url, start(client, account, text="Me too")) == 404
    # an internal note's file on the same conversation, and the visitor's own message's
    note = message_add(
        ticket=ticket,
        body="note",
        kind="internal_note",
        author_user=agent,
        attachments=[NewAttachment("note.pdf", "application/pdf", b"secret")],
    )
    assert status(file_url(account, note.attachments.get().pk), chat["session"]) == 404
    inbound = Message.objects.filter(ticket=ticket, direction="inbound").first()
    assert inbound is not None
    own = Attachment.objects.create(
        message=inbound, filename="x.txt", external_url="https://x.test/x"
    )
    assert status(file_url(account, own.pk), chat["session"]) == 404
    assert status(file_url(account, 999_999), chat["session"]) == 404
    # an expired session
    settings.WEBCHAT_SESSION_TTL_SECONDS = 0
    with mock.patch("time.time", return_value=10**10):
        assert status(url, chat["session"]) == 404


def test_file_downloads_are_rate_limited_as_polls(
    client: Client, chat: dict[str, Any], settings: Any
) -> None:
    settings.WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE = 2
    url = file_url(chat["account"], chat["attachment"].pk)
    codes = [client.get(url, HTTP_X_WEBCHAT_SESSION=chat["session"]).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
