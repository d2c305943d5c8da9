"""The web chat widget in a real browser: a file an agent sends shows under the reply and
downloads with the visitor's own session; a file the visitor sends (the paperclip) becomes
an attachment of its message, and the visitor can download it again; one that did not get
through is sent again with Retry."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from channels_app.services import channel_account_upsert
from tests.e2e.test_workbench_e2e import LIVE_TIMEOUT_MS, _call
from tickets.models import Attachment, Message, Ticket
from tickets.services import NewAttachment, message_add

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LABEL = b"%PDF-1.4 return label"


def test_a_visitor_downloads_a_file_an_agent_sent(
    browser: Any, live_asgi: str, agent: Any, tmp_path: Any
) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    # a context of its own: the widget brings its inline <style>, which this site's own
    # CSP refuses (the ``page`` fixture fails on any CSP report); an embedding page has its
    # own policy
    context = browser.new_context(base_url=live_asgi, accept_downloads=True)
    try:
        _visitor_downloads(context.new_page(), account, agent, tmp_path)
    finally:
        context.close()


def _open_widget(page: Any, account: Any) -> None:
    page.goto("/accounts/login/")  # any page of the site: the widget is same-origin here
    page.evaluate(
        """token => {
            const s = document.createElement("script");
            s.src = "/static/webchat/widget.js";
            s.dataset.token = token;
            document.body.appendChild(s);
        }""",
        account.webhook_token,
    )
    # styled as designed on a page whose CSP allows no inline style (this site's): the
    # widget links its stylesheet (an inline <style> was refused here)
    expect(page.locator(".swc-btn")).to_have_css("position", "fixed", timeout=10_000)
    page.click(".swc-btn")
    page.fill(".swc-start input[type=text]", "Vera")
    page.fill(".swc-start input[type=email]", "vera@example.com")
    page.click(".swc-start button[type=submit]")


def _visitor_downloads(page: Any, account: Any, agent: Any, tmp_path: Any) -> None:
    _open_widget(page, account)
    page.fill(".swc-form input[type=text]", "Where is my return label?")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while not Ticket.objects.filter(channel="webchat").exists():
        assert time.monotonic() < deadline, "the visitor's message made no ticket"
        time.sleep(0.2)
    ticket = Ticket.objects.get(channel="webchat")
    _call(
        message_add,
        ticket=ticket,
        body="Here it is.",
        author_user=agent,
        attachments=[NewAttachment("label.pdf", "application/pdf", LABEL, kind="document")],
    )
    link = page.locator(".swc-agent .swc-file", has_text="label.pdf")
    link.wait_for(timeout=LIVE_TIMEOUT_MS)
    with page.expect_download(timeout=LIVE_TIMEOUT_MS) as download:
        link.click()
    assert download.value.suggested_filename == "label.pdf"
    saved = tmp_path / "label.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes() == LABEL


PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_a_visitor_sends_a_photo(browser: Any, live_asgi: str, tmp_path: Any) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi, accept_downloads=True)
    try:
        page = context.new_page()
        _open_widget(page, account)
        page.fill(".swc-form input[type=text]", "It arrived broken")
        photo = tmp_path / "kettle.png"
        photo.write_bytes(PHOTO)
        page.set_input_files(".swc-form input[type=file]", str(photo))
        page.locator(".swc-visitor .swc-note", has_text="kettle.png").wait_for(
            timeout=LIVE_TIMEOUT_MS
        )
        deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
        while not Attachment.objects.filter(filename="kettle.png").exists():
            assert time.monotonic() < deadline, "the visitor's file made no attachment"
            time.sleep(0.2)
        attachment = Attachment.objects.get()
        assert attachment.message.body_text == "It arrived broken"
        assert attachment.message.ticket.channel == "webchat"
        assert attachment.file.read() == PHOTO
        # once recorded, the visitor's message links the file, to download it again
        link = page.locator(".swc-visitor .swc-file", has_text="kettle.png")
        link.wait_for(timeout=LIVE_TIMEOUT_MS)
        with page.expect_download(timeout=LIVE_TIMEOUT_MS) as download:
            link.click()
        saved = tmp_path / "again.png"
        download.value.save_as(saved)
        assert saved.read_bytes() == PHOTO
    finally:
        context.close()


def test_a_file_that_did_not_get_through_is_sent_again_with_retry(
    browser: Any, live_asgi: str, tmp_path: Any
) -> None:
    """The network drops the first upload: the message says so and offers Retry, which
    sends the same file (the browser's copy, same client id); one attachment, one message."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    tries: list[str] = []

    def flaky(route: Any) -> None:
        tries.append(route.request.method)
        if len(tries) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    context.route(re.compile(r"/api/webchat/[^/]+/files$"), flaky)
    try:
        page = context.new_page()
        _open_widget(page, account)
        page.fill(".swc-form input[type=text]", "The receipt")
        receipt = tmp_path / "receipt.png"
        receipt.write_bytes(PHOTO)
        page.set_input_files(".swc-form input[type=file]", str(receipt))
        mine = page.locator(".swc-visitor", has_text="The receipt")
        expect(mine.locator(".swc-note")).to_have_text("receipt.png: not sent")
        retry = mine.locator(".swc-retry", has_text="Retry")
        expect(retry).to_be_visible()
        assert not Attachment.objects.exists()
        retry.click()
        expect(mine.locator(".swc-note")).to_have_text("receipt.png: sent", timeout=LIVE_TIMEOUT_MS)
        expect(mine.locator(".swc-retry")).to_have_count(0)
        deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
        while not Attachment.objects.filter(filename="receipt.png").exists():
            assert time.monotonic() < deadline, "the file sent again made no attachment"
            time.sleep(0.2)
        assert tries == ["POST", "POST"]
        assert Attachment.objects.get().message.body_text == "The receipt"
        assert Message.objects.filter(body_text="The receipt").count() == 1
    finally:
        context.close()
