"""The demo mailbox: ``load_demo`` creates one e-mail account whose replies are written as
``.eml`` files on this machine (``transport: local_files``), through the real outbound path
(delivery engine, e-mail adapter, recorded attempts). No HTTP request is ever made."""

from __future__ import annotations

import dataclasses
import email
import io
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast

import pytest
import responses
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from channels_app.adapters.base import OutboundRequest, get_adapter
from channels_app.adapters.email.local_files import file_name
from channels_app.demo import DEMO_MAILBOX_NAME, load_demo_channels
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from support.delivery.models import Attempt, Delivery
from support.errors import PermanentError
from tickets import demo
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db

# One demo ticket per channel of ``tickets.demo.CHANNELS`` (e-mail, WhatsApp, web chat,
# Messenger, Instagram, X, chatbot, API), plus the SLA demo's e-mail ticket.
DEMO_TICKETS = len(demo.CHANNELS)


@pytest.fixture
def mail_dir(settings: Any, tmp_path: Path) -> Path:
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    return tmp_path / "mail"


@pytest.fixture
def demo_loaded(monkeypatch: pytest.MonkeyPatch, mail_dir: Path) -> ChannelAccount:
    monkeypatch.setattr(demo, "DEMO_TICKETS", DEMO_TICKETS)
    call_command("load_demo", password="demo-pass-for-tests", stdout=io.StringIO())
    return ChannelAccount.objects.get(name=DEMO_MAILBOX_NAME)


def _mails(directory: Path) -> list[tuple[str, EmailMessage]]:
    """The files in the mail directory, parsed (name, mail)."""
    if not directory.exists():
        return []
    return [
        (
            path.name,
            cast(EmailMessage, email.message_from_bytes(path.read_bytes(), policy=default_policy)),
        )
        for path in sorted(directory.iterdir())
    ]


def test_load_demo_creates_the_mailbox_once_and_attaches_the_demo_email_tickets(
    monkeypatch: pytest.MonkeyPatch, mail_dir: Path
) -> None:
    assert not ChannelAccount.objects.exists()  # no migration creates an account
    monkeypatch.setattr(demo, "DEMO_TICKETS", DEMO_TICKETS)
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)

    [mailbox] = ChannelAccount.objects.all()
    assert (mailbox.channel, mailbox.name, mailbox.external_id, mailbox.is_active) == (
        "email",
        "Demo mailbox (local files)",
        "support@example.com",
        True,
    )
    assert mailbox.settings == {
        "transport": "local_files",
        "from_email": "support@example.com",
        "from_name": "Support Desk (demo)",
    }
    # no credentials: it cannot call SendGrid, and its webhook URL accepts nothing
    assert (mailbox.access_token, mailbox.inbound_token) == ("", "")
    attached = dict(Ticket.objects.values_list("pk", "channel_account_id"))
    email_tickets = set(Ticket.objects.filter(channel="email").values_list("pk", flat=True))
    assert len(email_tickets) == 2  # the demo's e-mail ticket and the SLA demo's
    assert attached == {pk: (str(mailbox.pk) if pk in email_tickets else "") for pk in attached}
    assert _mails(mail_dir) == []  # loading sends nothing

    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    assert list(ChannelAccount.objects.values_list("pk", "name")) == [
        (mailbox.pk, DEMO_MAILBOX_NAME)
    ]
    assert dict(Ticket.objects.values_list("pk", "channel_account_id")) == attached
    assert not Delivery.objects.filter(target_kind="channel_reply").exists()


@responses.activate
@pytest.mark.parametrize("channel", ["email", "api", "chatbot"])
def test_a_reply_on_a_demo_ticket_is_written_to_the_local_mailbox(
    channel: str,
    demo_loaded: ChannelAccount,
    mail_dir: Path,
    client: Client,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    """The workbench's reply form, as an agent uses it: the reply becomes a delivery sent by
    the e-mail adapter through the demo mailbox, every attempt recorded, the message
    "sent" with our Message-ID, and one .eml file holds the mail the customer would get."""
    ticket = Ticket.objects.get(tags__name=demo.DEMO_TAG, channel=channel)
    client.force_login(get_user_model().objects.get(username="supervisor"))
    before = set(Delivery.objects.values_list("pk", flat=True))  # the demo's history
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/tickets/{ticket.number}/messages", {"body": "It ships tomorrow.", "kind": "public"}
        )
    assert response.status_code in (200, 302)

    message = Message.objects.get(ticket=ticket, body_text="It ships tomorrow.")
    our_id = (
        f"<reply-{message.pk}.{ticket.correlation_id}@{settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN}>"
    )
    assert (message.channel, message.delivery_status, message.delivery_error) == (
        channel,
        "sent",
        "",
    )
    assert message.channel_message_id == our_id
    [delivery] = Delivery.objects.exclude(pk__in=before)
    assert (delivery.target_kind, delivery.target_key, delivery.status, delivery.attempts) == (
        "channel_reply",
        f"email:{demo_loaded.pk}",
        "succeeded",
        1,
    )
    [attempt] = Attempt.objects.exclude(delivery__in=before)
    assert (attempt.delivery_id, attempt.outcome, attempt.http_status, attempt.error) == (
        delivery.pk,
        "success",
        None,
        "",
    )
    domain = settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN
    path = mail_dir / f"{ticket.number}_reply-{message.pk}.{ticket.correlation_id}_{domain}.eml"
    assert attempt.response_summary == f"written to {path}"
    assert attempt.request_summary["file"] == str(path)
    [(name, mail)] = _mails(mail_dir)
    assert name == path.name
    assert {key: str(mail[key]) for key in ("From", "To", "Subject", "Message-ID")} == {
        "From": '"Support Desk (demo)" <support@example.com>',
        "To": ticket.customer.email,
        "Subject": f"Re: {ticket.subject} [{ticket.number}]",
        "Message-ID": our_id,
    }
    assert mail.get_content().strip() == "It ships tomorrow."
    assert len(responses.calls) == 0  # nothing left the machine

    # The ticket page says so: the reply "Sent", the channel deliveries panel.
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert "No e-mail account is configured" not in page
    assert "Email: Succeeded (1 attempt), message sent" in page


def test_a_reply_on_a_demo_whatsapp_ticket_still_fails_with_its_reason(
    demo_loaded: ChannelAccount,
    mail_dir: Path,
    client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The demo has nothing that could stand for WhatsApp (or Messenger, Instagram, X, web
    chat): those replies fail visibly, and nothing is written to the mailbox."""
    ticket = Ticket.objects.get(tags__name=demo.DEMO_TAG, channel="whatsapp")
    client.force_login(get_user_model().objects.get(username="supervisor"))
    before = Delivery.objects.count()  # the demo's history
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/tickets/{ticket.number}/messages", {"body": "Hi!", "kind": "public"})
    message = Message.objects.get(ticket=ticket, body_text="Hi!")
    assert (message.delivery_status, message.delivery_error_code, message.delivery_error) == (
        "failed",
        "no_account",
        "No WhatsApp account is configured; not sent.",
    )
    assert Delivery.objects.count() == before
    assert _mails(mail_dir) == []


def test_no_demo_mailbox_where_an_email_account_is_configured(mail_dir: Path) -> None:
    real = make_account("email")
    load_demo_channels(progress=lambda _: None)
    assert list(ChannelAccount.objects.all()) == [real]


def test_no_demo_mailbox_in_production(settings: Any, mail_dir: Path) -> None:
    settings.ENVIRONMENT = "prod"
    load_demo_channels(progress=lambda _: None)
    assert not ChannelAccount.objects.exists()


def _outbound() -> OutboundRequest:
    return OutboundRequest(
        message_id=7,
        ticket_id=3,
        ticket_number="T-000003",
        recipient_id="ada@example.com",
        text="Hello",
        subject="Order 9",
        thread_message_ids=("<a@mail.example.org>", "<b@mail.example.org>"),
        outgoing_message_id="<reply-7.x@support.local>",
    )


@responses.activate
def test_local_files_transport_writes_the_same_mail_sendgrid_would_get(mail_dir: Path) -> None:
    account = make_account("email", access_token="", external_id="help@acme.test")
    account.settings = {"transport": "local_files", "from_name": "Acmé Help"}
    account.save()
    result = get_adapter("email").send(account, _outbound())
    [(name, mail)] = _mails(mail_dir)
    assert name == "T-000003_reply-7.x_support.local.eml"
    assert {
        key: str(mail[key])
        for key in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References")
    } == {
        "From": "Acmé Help <help@acme.test>",
        "To": "ada@example.com",
        "Subject": "Re: Order 9 [T-000003]",
        "Message-ID": "<reply-7.x@support.local>",
        "In-Reply-To": "<b@mail.example.org>",
        "References": "<a@mail.example.org> <b@mail.example.org>",
    }
    assert (result.external_message_id, result.http_status, result.delivered) == (
        "<reply-7.x@support.local>",
        None,
        False,
    )
    assert result.request_body["file"] == str(mail_dir / name)
    # the same reply again rewrites the same file
    get_adapter("email").send(account, _outbound())
    assert [n for n, _ in _mails(mail_dir)] == [name]
    assert len(responses.calls) == 0


def test_local_files_transport_is_refused_in_production(settings: Any, mail_dir: Path) -> None:
    settings.ENVIRONMENT = "prod"
    account = make_account("email", access_token="")
    account.settings = {"transport": "local_files"}
    account.save()
    with pytest.raises(PermanentError, match="refused with ENVIRONMENT=prod"):
        get_adapter("email").send(account, _outbound())
    assert _mails(mail_dir) == []


def test_local_files_transport_refuses_a_header_with_a_line_break(mail_dir: Path) -> None:
    account = make_account("email", access_token="")
    account.settings = {"transport": "local_files", "from_name": "Acme\nBcc: x@y.test"}
    account.save()
    with pytest.raises(PermanentError, match="can't contain newlines"):
        get_adapter("email").send(account, _outbound())
    assert _mails(mail_dir) == []


def test_a_recipient_that_is_not_an_address_is_refused_before_any_transport(
    mail_dir: Path,
) -> None:
    account = make_account("email", access_token="")
    account.settings = {"transport": "local_files"}
    account.save()
    outbound = dataclasses.replace(_outbound(), recipient_id="ada@example.com\nBcc: x@y.test")
    with pytest.raises(PermanentError, match="is not an e-mail address to reply to"):
        get_adapter("email").send(account, outbound)
    assert _mails(mail_dir) == []


def test_a_subject_with_a_line_break_is_sent_on_one_line(mail_dir: Path) -> None:
    """The subject is the customer's (an inbound ``=?utf-8?q?Hello=0D=0ABcc=3A_x?=``
    decodes to a line break): the reply still goes out, its subject on one line."""
    account = make_account("email", access_token="")
    account.settings = {"transport": "local_files"}
    account.save()
    outbound = dataclasses.replace(_outbound(), subject="Hello\r\nBcc: x@y.test\tnow")
    get_adapter("email").send(account, outbound)
    [(_, mail)] = _mails(mail_dir)
    assert mail["Subject"] == "Re: Hello Bcc: x@y.test now [T-000003]"
    assert mail["Bcc"] is None


def test_local_files_transport_cannot_write_its_folder(mail_dir: Path, settings: Any) -> None:
    """A mail folder that is a file fails at once (retrying cannot help) and leaves no
    temporary file behind; nothing is half-written."""
    account = make_account("email", access_token="")
    account.settings = {"transport": "local_files"}
    account.save()
    blocker = mail_dir.parent / "not-a-folder"
    blocker.write_text("")
    settings.EMAIL_FILE_PATH = str(blocker / "mail")
    with pytest.raises(PermanentError, match="Could not write"):
        get_adapter("email").send(account, _outbound())
    settings.EMAIL_FILE_PATH = str(mail_dir)
    get_adapter("email").send(account, _outbound())
    get_adapter("email").send(account, _outbound())  # the same reply again: one file
    assert len(_mails(mail_dir)) == 1
    assert [p.name for p in mail_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_an_unknown_transport_is_a_permanent_error(mail_dir: Path) -> None:
    account = make_account("email")
    account.settings = {"transport": "smtp"}
    account.save()
    with pytest.raises(PermanentError, match="Unknown e-mail transport 'smtp'"):
        get_adapter("email").send(account, _outbound())


@pytest.mark.parametrize(
    ("number", "message_id", "expected"),
    [
        ("T-000001", "<reply-1.u@d.test>", "T-000001_reply-1.u_d.test.eml"),
        ("", "<webchat-verify-2.ab@d.test>", "webchat-verify-2.ab_d.test.eml"),
        ("", "<../../etc/passwd>", "etc_passwd.eml"),
    ],
)
def test_file_names_stay_inside_the_mail_directory(
    number: str, message_id: str, expected: str
) -> None:
    assert file_name(number, message_id) == expected
