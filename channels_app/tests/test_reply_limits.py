"""What one reply may carry on its channel (``channels_app.services.reply_limits``):
refused when an agent sends (API 400 by field, the workbench's refusal by the reply form)
and again before the send, in words naming the channel and the limit."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from bs4 import BeautifulSoup
from django.test import Client
from django.urls import reverse

from channels_app.adapters.base import ReplyLimits, get_adapter
from channels_app.adapters.limits import reply_limits_problems
from channels_app.services.reply_limits import reply_channel, size_words
from channels_app.tests.conftest import counts, diff, make_account
from support.delivery.models import Delivery
from tickets.models import Customer, Message, Ticket
from tickets.reply_rules import ReplyFileInfo
from tickets.services import message_add, ticket_create
from tickets.services.lifecycle import NewAttachment

pytestmark = pytest.mark.django_db

MB = 1_000_000


def limits(channel: str, monkeypatch: pytest.MonkeyPatch, **values: Any) -> ReplyLimits:
    """Give ``channel``'s adapter these limits for one test (channels owned elsewhere)."""
    chosen = ReplyLimits(**values)
    monkeypatch.setattr(get_adapter(channel), "reply_limits", chosen)
    return chosen


def messenger_ticket(customer: Customer) -> Ticket:
    return ticket_create(customer=customer, subject="Order", body="Hi", channel="messenger")


# --- the words ----------------------------------------------------------------------------


def test_the_words_name_the_channel_and_the_limit() -> None:
    messenger = ReplyLimits(text_max_chars=2000)
    assert reply_limits_problems(messenger, label="Messenger", text="x" * 2345, files=()) == {
        "body": ["Messenger replies can be at most 2,000 characters; this one has 2,345."]
    }
    assert reply_limits_problems(messenger, label="Messenger", text="x" * 2000, files=()) == {}
    pdf = ReplyFileInfo("invoice.pdf", "application/pdf", int(20.3 * MB))
    assert reply_limits_problems(ReplyLimits(), label="Web chat", text="", files=[pdf]) == {
        "files": ["Web chat replies can't carry files."]
    }
    whatsapp = ReplyLimits(
        files=True,
        files_max_count=1,
        file_max_bytes=16 * MB,
        file_types=("image/", "application/pdf"),
    )
    photo = ReplyFileInfo("photo.heic", "image/heic", 1000)
    zipped = ReplyFileInfo("logs.zip", "application/zip", 1000)
    assert reply_limits_problems(whatsapp, label="WhatsApp", text="", files=[pdf, zipped]) == {
        "files": [
            "WhatsApp replies can carry at most 1 file; this one has 2.",
            "WhatsApp files can be at most 16 MB; invoice.pdf is 20.3 MB.",
            "WhatsApp replies can't carry logs.zip (application/zip); they take images, PDF.",
        ]
    }
    assert reply_limits_problems(whatsapp, label="WhatsApp", text="", files=[photo]) == {}
    assert (size_words(16 * MB), size_words(2048), size_words(80)) == ("16 MB", "2 KB", "80 bytes")


@pytest.mark.parametrize(
    ("channel", "out"),
    [
        ("messenger", "messenger"),
        ("webchat", "webchat"),
        ("email", "email"),
        ("chatbot", "email"),
        ("api", "email"),
        ("phone", "email"),
    ],
)
def test_the_channel_a_reply_really_goes_out_on(channel: str, out: str) -> None:
    assert reply_channel(channel) == out


# --- when an agent sends ------------------------------------------------------------------


def test_a_reply_over_the_channels_text_limit_is_refused_and_nothing_is_written(
    customer: Customer, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.errors import InvalidInput

    limits("messenger", monkeypatch, text_max_chars=2000)
    ticket = messenger_ticket(customer)
    before = counts()
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="x" * 2345, author_user=agent)
    assert refused.value.message == (
        "Messenger replies can be at most 2,000 characters; this one has 2,345."
    )
    assert refused.value.details == {"body": [refused.value.message]}
    assert diff(before, counts()) == {}
    # at the limit it goes; an internal note is never checked (it goes nowhere)
    message_add(ticket=ticket, body="x" * 2000, author_user=agent)
    message_add(ticket=ticket, body="x" * 2345, author_user=agent, kind="internal_note")
    assert diff(before, counts()) == {"messages": 2}


def test_files_on_a_channel_that_takes_none_are_refused_but_a_note_may_carry_them(
    customer: Customer, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.errors import InvalidInput

    limits("webchat", monkeypatch)  # no files (the default of a channel that says nothing)
    ticket = ticket_create(customer=customer, subject="Chat", body="Hi", channel="webchat")
    label = NewAttachment(filename="label.pdf", content_type="application/pdf", content=b"%PDF")
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="Here it is", author_user=agent, attachments=[label])
    assert refused.value.details == {"files": ["Web chat replies can't carry files."]}
    note = message_add(
        ticket=ticket, body="label", author_user=agent, kind="internal_note", attachments=[label]
    )
    assert note.attachments.count() == 1


@pytest.mark.parametrize("channel", ["api", "phone", "chatbot"])
def test_a_reply_that_goes_by_email_is_held_to_the_email_limits(
    channel: str, customer: Customer, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.errors import InvalidInput

    limits("email", monkeypatch, text_max_chars=10)
    limits("messenger", monkeypatch, text_max_chars=5)  # not this one's
    ticket = ticket_create(customer=customer, subject="Hi", body="Hello", channel=channel)
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="x" * 11, author_user=agent)
    assert refused.value.message == "Email replies can be at most 10 characters; this one has 11."


def test_the_api_refuses_with_400_by_body(
    customer: Customer, agent_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits("messenger", monkeypatch, text_max_chars=2000)
    ticket = messenger_ticket(customer)
    response = agent_client.post(
        f"/api/tickets/{ticket.pk}/messages", {"body": "x" * 2345}, format="json"
    )
    assert response.status_code == 400
    says = "Messenger replies can be at most 2,000 characters; this one has 2,345."
    assert response.json() == {
        "error": {"code": "invalid", "message": says, "details": {"body": [says]}}
    }
    note = agent_client.post(
        f"/api/tickets/{ticket.pk}/messages",
        {"body": "x" * 2345, "kind": "internal_note"},
        format="json",
    )
    assert note.status_code == 201
    assert ticket.messages.count() == 2  # the customer's and the note


def test_the_workbench_refuses_by_the_reply_form_and_keeps_the_text(
    customer: Customer, agent: Any, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits("messenger", monkeypatch, text_max_chars=20)
    ticket = messenger_ticket(customer)
    client.force_login(agent)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    says = "Messenger replies can be at most 20 characters; this one has 25."
    with_js = client.post(url, {"kind": "public", "body": "y" * 25}, HTTP_HX_REQUEST="true")
    assert (with_js.status_code, with_js.content.decode()) == (400, says)
    without_js = client.post(url, {"kind": "public", "body": "y" * 25})
    assert without_js.status_code == 400
    form = BeautifulSoup(without_js.content, "html.parser").select_one("form#composer")
    assert form is not None
    textarea, error = form.select_one("textarea"), form.select_one(".form-error")
    assert textarea is not None
    assert error is not None
    assert textarea.get_text().lstrip("\n") == "y" * 25
    assert error.get_text() == says
    assert ticket.messages.count() == 1


# --- again before the send ----------------------------------------------------------------


@responses.activate
def test_a_reply_queued_before_the_limit_fails_at_the_send_in_words(
    post_fixture: Any,
    agent: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Queued when it was within the limits; the limit is lower when it is sent: failed at
    once with the words, no request made (never a provider's 400)."""
    from support.delivery import services as engine

    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    message = message_add(ticket=ticket, body="z" * 50, author_user=agent)
    limits("whatsapp", monkeypatch, text_max_chars=40)
    from channels_app import services

    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    with django_capture_on_commit_callbacks(execute=True):
        engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert len(responses.calls) == 0
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert (
        message.delivery_error == "WhatsApp replies can be at most 40 characters; this one has 50."
    )
    assert Delivery.objects.get().status == "dead"
    assert Message.objects.filter(pk=message.pk, delivery_status="failed").exists()


# --- the reply box ------------------------------------------------------------------------


def test_the_reply_box_shows_the_channels_limits(
    customer: Customer,
    agent: Any,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    limits(
        "messenger",
        monkeypatch,
        text_max_chars=2000,
        files=True,
        files_max_count=1,
        file_max_bytes=25 * MB,
        file_types=("image/", "application/pdf"),
    )
    ticket = messenger_ticket(customer)
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    textarea, files, hint, files_hint = (
        page.select_one(css)
        for css in ("#composer-body", "#composer-files", "#composer-hint", "#composer-files-hint")
    )
    assert textarea is not None and files is not None  # noqa: PT018
    assert hint is not None and files_hint is not None  # noqa: PT018
    assert textarea["data-max-chars"] == "2000"
    assert hint.get_text() == "Sent to the customer on Messenger (at most 2,000 characters)."
    assert files["data-accept"] == "image/*,application/pdf"
    assert files_hint.get_text() == (
        # Messenger takes 25 MB, but no message here carries more than 20 MB of files
        "Files on Messenger: images, PDF, up to 20 MB each, 1 file at most; internal notes "
        "take any file. At most 20 MB together."
    )
    # a channel with no text limit of its own and no files; an API ticket replies by e-mail
    limits("webchat", monkeypatch)
    chat = ticket_create(customer=customer, subject="Chat", body="Hi", channel="webchat")
    page = BeautifulSoup(client.get(f"/tickets/{chat.number}/").content, "html.parser")
    textarea, files_hint = (
        page.select_one("#composer-body"),
        page.select_one("#composer-files-hint"),
    )
    assert textarea is not None and files_hint is not None  # noqa: PT018
    assert not textarea.has_attr("data-max-chars")
    assert files_hint.get_text().startswith("Web chat replies can't carry files; internal notes")
    api = ticket_create(customer=customer, subject="API", body="Hi", channel="api")
    page = BeautifulSoup(client.get(f"/tickets/{api.number}/").content, "html.parser")
    hint = page.select_one("#composer-hint")
    assert hint is not None
    assert hint.get_text() == "Sent to the customer on Email."
    # a chatbot hand-off: by e-mail, and to the bot when it registered a callback
    bot = ticket_create(customer=customer, subject="Bot", body="Hi", channel="chatbot")
    page = BeautifulSoup(client.get(f"/tickets/{bot.number}/").content, "html.parser")
    hint = page.select_one("#composer-hint")
    assert hint is not None
    assert hint.get_text() == "Sent to the customer on Email."
    first = bot.messages.get()
    first.metadata = {**first.metadata, "bot_callback_url": "https://bot.example.com/cb"}
    first.save(update_fields=["metadata"])
    page = BeautifulSoup(client.get(f"/tickets/{bot.number}/").content, "html.parser")
    hint = page.select_one("#composer-hint")
    assert hint is not None
    assert hint.get_text() == (
        "Sent to the customer on Email and to the chatbot that handed it off."
    )
    # e-mail's own total is the project's cap: said once, not twice
    files_hint = page.select_one("#composer-files-hint")
    assert files_hint is not None
    assert files_hint.get_text() == (
        "Files on Email: any type, up to 20 MB each, 10 files at most; internal notes take "
        "any file. At most 20 MB together."
    )
    settings.TICKET_REPLY_FILES_MAX_BYTES = 40 * MB  # a larger cap: e-mail's is the smaller
    page = BeautifulSoup(client.get(f"/tickets/{api.number}/").content, "html.parser")
    files_hint = page.select_one("#composer-files-hint")
    assert files_hint is not None
    assert "10 files at most, 20 MB together; internal notes" in files_hint.get_text()


# --- the files an adapter gets --------------------------------------------------------------


def test_the_outbound_request_carries_the_replys_files(
    customer: Customer, agent: Any, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any
) -> None:
    """In the order attached: ``read`` gives the stored bytes, ``public_url`` "" off S3 and
    a signed S3 URL valid a few minutes on it (with our type and disposition)."""
    import time
    from urllib.parse import parse_qs, urlsplit

    from moto import mock_aws

    from channels_app.services.outbound import _outbound_request
    from support.storage import S3Storage
    from tickets.models import Attachment

    settings.MEDIA_ROOT = tmp_path
    limits("email", monkeypatch, files=True)
    ticket = ticket_create(customer=customer, subject="Order", body="Hi", channel="api")
    message = message_add(
        ticket=ticket,
        body="Attached.",
        author_user=agent,
        attachments=[
            NewAttachment("invoice.pdf", "application/pdf", b"%PDF-1", kind="document"),
            NewAttachment("photo.png", "image/png", b"\x89PNG", kind="image"),
        ],
    )
    outbound = _outbound_request(message, "message:1", "email")
    pdf, png = outbound.files
    assert [(f.filename, f.content_type, f.size, f.kind) for f in outbound.files] == [
        ("invoice.pdf", "application/pdf", 6, "document"),
        ("photo.png", "image/png", 4, "image"),
    ]
    assert [f.attachment_id for f in outbound.files] == list(
        message.attachments.order_by("pk").values_list("pk", flat=True)
    )
    assert (pdf.read(), png.read()) == (b"%PDF-1", b"\x89PNG")
    assert (pdf.public_url(), png.public_url()) == ("", "")
    settings.S3_ENABLED = True
    with mock_aws():
        monkeypatch.setattr(
            Attachment._meta.get_field("file"), "storage", S3Storage(bucket_name="files")
        )
        url = _outbound_request(message, "message:1", "email").files[0].public_url()
    query = parse_qs(urlsplit(url).query)
    valid_for = int(query["Expires"][0]) - time.time()
    assert 290 < valid_for <= 300  # a few minutes, not the storage's hour
    assert query["response-content-type"] == ["application/pdf"]
    assert query["response-content-disposition"][0].startswith("attachment")
