"""Subjects made from a message's start are cut at a word's end, never inside a word or a
personal detail (``support.redaction.truncate``): they reach model providers (the routing
prompt and history tool, drafts) redacted, and a half address is no longer recognised."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from channels_app.adapters.base import InboundMessage
from channels_app.models import ChannelAccount
from channels_app.services.ingest import _subject_for
from channels_app.tests.test_webchat_uploads import account, session, upload
from support.redaction import redact
from tickets.models import Ticket

__all__ = ["account", "session"]  # the fixtures, shared with the upload tests

TEXT = (
    "Hello, I need help with my refund, please kindly reply to me at zq1815.home@example.com today"
)


@pytest.mark.django_db
def test_a_web_chat_subject_holds_no_part_of_an_address(
    client: Client,
    account: ChannelAccount,
    session: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(client, account, session, text=TEXT).status_code == 202
    subject = Ticket.objects.get().subject
    # before: "Web chat: … reply to me at zq1815.h", sent to the model as it is
    assert subject == "Web chat: Hello, I need help with my refund, please kindly reply to me at"
    assert redact(subject) == subject


def test_a_web_chat_subject_without_a_space_is_cut_at_its_length() -> None:
    from channels_app.adapters.webchat.adapter import _subject

    assert _subject("Where is my parcel?") == "Web chat: Where is my parcel?"
    assert _subject("x" * 200) == "Web chat: " + "x" * 80


def test_a_subject_from_the_first_line_holds_no_part_of_a_card() -> None:
    line = "I was charged twice, please refund it to the card I paid with " + (
        "which is 4111 1111 1111 1111 thanks"
    )
    line = "Please help. " * 3 + line
    message = InboundMessage(external_message_id="m1", sender_id="s1", text=line + "\nmore")
    subject = _subject_for(message, "WhatsApp")
    assert len(subject) <= 120
    assert line.startswith(subject)
    # before: "… which is 4111 1111 1111 1" (a part of the card, not recognised as one)
    assert "4111" not in subject
    assert subject.endswith("which is")
    short = InboundMessage(external_message_id="m2", sender_id="s1", text="Hi there\nmore")
    assert _subject_for(short, "WhatsApp") == "Hi there"
    empty = InboundMessage(external_message_id="m3", sender_id="s1", text="")
    assert _subject_for(empty, "WhatsApp") == "WhatsApp message"
