"""SendGrid Inbound Parse: fields, charsets, raw MIME, HTML to text, quoted replies,
attachments, SPF/DKIM kept, threading by headers and by the ticket token."""

from __future__ import annotations

from typing import Any

import pytest

from channels_app.adapters.email.parsing import html_to_text, strip_quoted_reply
from channels_app.tests.conftest import counts, diff, make_account
from tickets.models import Attachment, Message, Ticket

pytestmark = pytest.mark.django_db


def test_new_mail_keeps_attachment_auth_results_and_message_id(
    post_fixture: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("email")
    post_fixture(account, "inbound_parse_new")
    ticket = Ticket.objects.get()
    assert ticket.subject == "Order 1234 arrived broken"
    assert ticket.customer.email == "jane.doe@example.org"
    message = Message.objects.get()
    assert message.channel_message_id == "<CAHqs2r1ExampleFirst@mail.example.org>"
    assert message.metadata["spf"] == "pass"
    assert message.metadata["dkim"] == "{@example.org : pass}"
    attachment = Attachment.objects.get()
    assert (attachment.filename, attachment.content_type, attachment.kind) == (
        "photo.png",
        "image/png",
        "image",
    )
    assert attachment.size == 70
    assert attachment.file.name


def test_latin1_charset_is_decoded(post_fixture: Any) -> None:
    account = make_account("email")
    post_fixture(account, "inbound_parse_latin1")
    message = Message.objects.get()
    assert message.body_text == "Bonjour, ma facture est erronée. Merci, René"
    assert message.metadata["spf"] == "softfail"


def test_raw_mime_mode_html_only_becomes_text_without_quotes(post_fixture: Any) -> None:
    account = make_account("email")
    post_fixture(account, "inbound_parse_raw_mime")
    message = Message.objects.get()
    assert message.body_text == "I asked for a password reset twice & got nothing."
    assert message.channel_message_id == "<raw-0001@example.com>"
    assert Ticket.objects.get().subject == "Password reset not arriving"


def test_known_customer_by_email_gets_the_new_identity(post_fixture: Any) -> None:
    from tickets.models import Customer

    existing = Customer.objects.create(name="Jane D.", email="Jane.Doe@example.org")
    account = make_account("email")
    before = counts()
    post_fixture(account, "inbound_parse_new")
    assert diff(before, counts()) == {
        "identities": 1,
        "tickets": 1,
        "messages": 1,
        "attachments": 1,
        "events": 1,
    }
    assert Ticket.objects.get().customer == existing


def test_ticket_token_in_subject_threads_only_for_the_same_customer(post_fixture: Any) -> None:
    from channels_app.fixtures import fixture_load

    account = make_account("email")
    post_fixture(account, "inbound_parse_new")
    ticket = Ticket.objects.get()
    body = fixture_load("email", "inbound_parse_reply").body
    body = body.replace(b"<CAHqs2r1ExampleFirst@mail.example.org>", b"<unknown@x>")
    body = body.replace(
        b'name="subject"\r\n\r\nRe: Order 1234 arrived broken',
        f'name="subject"\r\n\r\nRe: Order 1234 arrived broken [{ticket.number}]'.encode(),
    )
    post_fixture(account, "inbound_parse_reply", body=body)
    assert Ticket.objects.count() == 1
    assert ticket.messages.count() == 2


def test_strip_quoted_reply_and_html_to_text() -> None:
    assert strip_quoted_reply("Yes please.\n\n-----Original Message-----\nFrom: x") == "Yes please."
    assert strip_quoted_reply("> quoted only") == "> quoted only"
    assert html_to_text("<p>Hi<br>there</p><style>p{}</style><div>A <b>bold</b> move</div>") == (
        "Hi\nthere\nA bold move"
    )


def test_one_mail_to_two_of_our_addresses_is_one_ticket(post_fixture: Any) -> None:
    """docs/channels.md, "Known limits": the same mail (one Message-ID) delivered to two
    e-mail accounts is recorded once; the second delivery is processed as a duplicate,
    not lost and not a second ticket."""
    from channels_app.models import InboundEvent, InboundStatus

    support = make_account("email")
    billing = make_account(
        "email", name="billing", external_id="billing@acme.test", inbound_token="other-token"
    )
    post_fixture(support, "inbound_parse_new")
    post_fixture(billing, "inbound_parse_new")
    ticket = Ticket.objects.get()
    assert ticket.channel_account_id == str(support.pk)
    assert Message.objects.count() == 1
    second = InboundEvent.objects.get(account=billing)
    assert second.status == InboundStatus.PROCESSED
    assert second.summary.get("duplicates") == 1
