"""What the compose-time check knew too little of, so the provider refused at send time:
sizes per type (WhatsApp, Instagram), Instagram's text counted in UTF-8 bytes, and an X
account whose token X granted without ``media.write``."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from bs4 import BeautifulSoup
from django.test import Client

from channels_app.adapters.base import OutboundFile, get_adapter
from channels_app.adapters.limits import reply_limits_problems
from channels_app.adapters.parts import files_check
from channels_app.adapters.twitter import tokens
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from channels_app.tests.test_twitter_tokens import (
    DM_URL,
    NEW_ACCESS,
    NEW_PAIR,
    TOKEN_URL,
    bearer,
    outbound,
    x_account,
)
from support.errors import InvalidInput, PermanentError
from tickets.models import Customer
from tickets.reply_rules import ReplyFileInfo
from tickets.services import message_add, ticket_create
from tickets.services.lifecycle import NewAttachment

pytestmark = pytest.mark.django_db

MB = 1_000_000
SCOPES_SETTING = "granted_scopes"  # where an X account keeps the scopes X granted
PNG = b"\x89PNG\r\n\x1a\n"


def a_file(name: str, content_type: str, size: int) -> OutboundFile:
    return OutboundFile(
        attachment_id=1,
        filename=name,
        content_type=content_type,
        size=size,
        kind="other",
        read=lambda: b"",
        public_url=lambda: "",
    )


# --- sizes per type -----------------------------------------------------------------------


def test_whatsapp_sizes_depend_on_the_type_when_the_agent_sends() -> None:
    limits = get_adapter("whatsapp").reply_limits
    photo = ReplyFileInfo("photo.jpg", "image/jpeg", 6 * MB)
    video = ReplyFileInfo("clip.mp4", "video/mp4", 17 * MB)
    manual = ReplyFileInfo("manual.pdf", "application/pdf", 50 * MB)
    assert reply_limits_problems(limits, label="WhatsApp", text="", files=[photo, video]) == {
        "files": [
            "WhatsApp images can be at most 5 MB; photo.jpg is 6 MB.",
            "WhatsApp video can be at most 16 MB; clip.mp4 is 17 MB.",
        ]
    }
    # WhatsApp takes documents up to 100 MB (the project's 20 MB a message is its own check)
    assert reply_limits_problems(limits, label="WhatsApp", text="", files=[manual]) == {}
    huge = ReplyFileInfo("scan.pdf", "application/pdf", 101 * MB)
    assert reply_limits_problems(limits, label="WhatsApp", text="", files=[huge]) == {
        "files": ["WhatsApp documents can be at most 100 MB; scan.pdf is 101 MB."]
    }


def test_instagram_images_are_held_to_8_mb_and_video_to_25(settings: Any) -> None:
    from channels_app.services.reply_limits import sizes_words

    settings.S3_ENABLED = True
    limits = get_adapter("instagram").reply_limits
    photo = ReplyFileInfo("photo.png", "image/png", 9 * MB)
    video = ReplyFileInfo("clip.mp4", "video/mp4", 24 * MB)
    assert reply_limits_problems(limits, label="Instagram", text="", files=[photo, video]) == {
        "files": ["Instagram images can be at most 8 MB; photo.png is 9 MB."]
    }
    longer = ReplyFileInfo("long.mp4", "video/mp4", 26 * MB)
    assert reply_limits_problems(limits, label="Instagram", text="", files=[longer]) == {
        "files": ["Instagram video and audio can be at most 25 MB; long.mp4 is 26 MB."]
    }
    settings.TICKET_REPLY_FILES_MAX_BYTES = 20 * MB
    assert sizes_words(limits) == "images up to 8 MB, video and audio up to 20 MB"


def test_the_adapters_own_check_before_the_send_reads_the_same_sizes() -> None:
    """The adapter's guard is the one check's rules and words (``reply_limits_problems``):
    a refusal reads the same whether the agent, the send or the adapter meets it."""
    limits = get_adapter("whatsapp").reply_limits
    with pytest.raises(PermanentError) as refused:
        files_check("WhatsApp", (a_file("big.png", "image/png", 6 * MB),), limits)
    assert str(refused.value) == "WhatsApp images can be at most 5 MB; big.png is 6 MB."
    assert reply_limits_problems(
        limits, label="WhatsApp", text="", files=[a_file("big.png", "image/png", 6 * MB)]
    ) == {"files": [str(refused.value)]}
    # a 50 MB PDF is a document: WhatsApp takes it
    files_check("WhatsApp", (a_file("manual.pdf", "application/pdf", 50 * MB),), limits)


def test_the_reply_box_says_each_kinds_size_and_never_more_than_a_message_may_carry(
    customer: Customer, agent: Any, client: Client, settings: Any
) -> None:
    from channels_app.services.reply_limits import sizes_words

    settings.TICKET_REPLY_FILES_MAX_BYTES = 20 * MB
    assert sizes_words(get_adapter("whatsapp").reply_limits) == (
        "images up to 5 MB, video and audio up to 16 MB, documents up to 20 MB"
    )
    settings.TICKET_REPLY_FILES_MAX_BYTES = 200 * MB
    assert sizes_words(get_adapter("whatsapp").reply_limits) == (
        "images up to 5 MB, video and audio up to 16 MB, documents up to 100 MB"
    )
    settings.TICKET_REPLY_FILES_MAX_BYTES = 20 * MB
    ticket = ticket_create(customer=customer, subject="Order", body="Hi", channel="whatsapp")
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    hint = page.select_one("#composer-files-hint")
    assert hint is not None
    assert "images up to 5 MB, video and audio up to 16 MB, documents up to 20 MB" in (
        hint.get_text()
    )


def test_the_reply_box_gives_its_script_each_kinds_size_and_the_messages_cap(
    customer: Customer, agent: Any, client: Client, settings: Any
) -> None:
    """What workbench.js reads to tell an agent at once that a chosen file is too large
    (the file input's data attributes): the channel's largest file of each kind, with the
    words the server's refusal uses, and the cap on one message's files."""
    import json

    settings.TICKET_REPLY_FILES_MAX_BYTES = 20 * MB
    ticket = ticket_create(customer=customer, subject="Order", body="Hi", channel="whatsapp")
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    files = page.select_one("#composer-files")
    assert files is not None
    assert files["data-channel"] == "WhatsApp"
    assert files["data-max-file-bytes"] == str(100 * MB)
    assert json.loads(str(files["data-max-file-bytes-by-type"])) == [
        ["image/", 5 * MB, "images"],
        ["video/", 16 * MB, "video"],
        ["audio/", 16 * MB, "audio"],
    ]
    assert files["data-other-files"] == "documents"
    assert files["data-files-max-total"] == str(20 * MB)
    assert page.select_one("#composer-files-error[role=alert][hidden]") is not None
    # a channel whose limit is the same for every file (e-mail: an API ticket's replies)
    api = ticket_create(customer=customer, subject="API", body="Hi", channel="api")
    page = BeautifulSoup(client.get(f"/tickets/{api.number}/").content, "html.parser")
    files = page.select_one("#composer-files")
    assert files is not None
    assert (files["data-channel"], files["data-max-file-bytes"]) == ("Email", str(20 * MB))
    assert files["data-max-file-bytes-by-type"] == "[]"
    assert files["data-other-files"] == "files"
    # an account that takes no files: no size to check (the hint says it takes none)
    _, dm = x_ticket(customer, "dm.read dm.write tweet.read users.read offline.access")
    page = BeautifulSoup(client.get(f"/tickets/{dm.number}/").content, "html.parser")
    files = page.select_one("#composer-files")
    assert files is not None
    assert not files.has_attr("data-max-file-bytes")
    assert files["data-files-max-total"] == str(20 * MB)


# --- Instagram counts bytes -----------------------------------------------------------------


def test_instagram_text_is_counted_in_utf8_bytes(
    customer: Customer, agent: Any, client: Client
) -> None:
    limits = get_adapter("instagram").reply_limits
    text = "é" * 620  # 620 characters, 1,240 bytes
    assert reply_limits_problems(limits, label="Instagram", text=text, files=()) == {
        "body": [
            "Instagram replies can be at most 1,000 bytes of text; this one has 1,240 (emoji "
            "and accented letters take 2–4 bytes each)."
        ]
    }
    assert reply_limits_problems(limits, label="Instagram", text="x" * 1000, files=()) == {}
    ticket = ticket_create(customer=customer, subject="DM", body="Hi", channel="instagram")
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="👍" * 251, author_user=agent)
    assert refused.value.details == {
        "body": [
            "Instagram replies can be at most 1,000 bytes of text; this one has 1,004 (emoji "
            "and accented letters take 2–4 bytes each)."
        ]
    }
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    textarea = page.select_one("#composer-body")
    assert textarea is not None
    assert textarea.get("data-max-bytes") == "1000"
    assert textarea.get("data-max-chars") is None


# --- X accounts without media.write -------------------------------------------------------


def x_ticket(customer: Customer, scopes: str | None) -> tuple[ChannelAccount, Any]:
    account = make_account("twitter")
    if scopes is not None:
        account.settings = {**account.settings, SCOPES_SETTING: scopes}
        account.save()
    ticket = ticket_create(customer=customer, subject="DM", body="Hi", channel="twitter")
    return account, ticket


def image() -> NewAttachment:
    return NewAttachment(filename="photo.png", content_type="image/png", content=PNG)


def test_files_are_refused_on_an_x_account_granted_without_media_write(
    customer: Customer, agent: Any, client: Client
) -> None:
    _, ticket = x_ticket(customer, "dm.read dm.write tweet.read users.read offline.access")
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="Here", author_user=agent, attachments=[image()])
    assert refused.value.details == {
        "files": [
            "This X account was connected without permission to upload media; connect it "
            f"again (OAuth 2.0 scopes: {tokens.SCOPES}) to send files."
        ]
    }
    message_add(ticket=ticket, body="Text alone goes", author_user=agent)
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    hint = page.select_one("#composer-files-hint")
    assert hint is not None
    assert "connected without permission to upload media" in hint.get_text()


@pytest.mark.parametrize("scopes", [None, tokens.SCOPES])
def test_files_go_on_an_x_account_with_media_write_or_scopes_unknown(
    customer: Customer, agent: Any, scopes: str | None
) -> None:
    _, ticket = x_ticket(customer, scopes)
    message_add(ticket=ticket, body="Here", author_user=agent, attachments=[image()])


def test_the_check_before_the_send_reads_the_accounts_scopes(customer: Customer) -> None:
    account, _ = x_ticket(customer, "dm.read dm.write")
    limits = get_adapter("twitter").reply_limits_for(account)
    with pytest.raises(PermanentError) as refused:
        files_check("X", (a_file("photo.png", "image/png", 1000),), limits)
    assert "connected without permission to upload media" in str(refused.value)


@responses.activate
def test_a_token_refresh_keeps_the_scopes_x_granted() -> None:
    account = x_account(expires_in=-1)
    assert tokens.granted_scopes(account) is None
    responses.post(TOKEN_URL, json=NEW_PAIR)
    responses.post(DM_URL, status=201, json={"data": {}}, match=bearer(NEW_ACCESS))
    get_adapter("twitter").send(account, outbound())
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert stored.settings[SCOPES_SETTING] == NEW_PAIR["scope"]
    assert tokens.granted_scopes(stored) == frozenset(str(NEW_PAIR["scope"]).split())
    assert tokens.granted_scopes(account) == tokens.granted_scopes(stored)


def test_a_pasted_token_takes_its_scopes_and_a_new_one_without_them_is_unknown() -> None:
    account = make_account("twitter")
    tokens.tokens_configure(account=account, access_token_set=True, scope="dm.write media.write")
    assert tokens.granted_scopes(account) == {"dm.write", "media.write"}
    tokens.tokens_configure(account=account, access_token_set=True)
    assert tokens.granted_scopes(ChannelAccount.objects.get(pk=account.pk)) is None
