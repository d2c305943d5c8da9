"""Reply drafts in Chromium: an agent asks for a draft on a demo ticket, sees its
citations, puts it in the reply box, edits it and sends it; the draft is recorded as
"sent after editing" (settled on the server from the reply actually stored)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from knowledge.models import ReplyDraft
from knowledge.parsing import parse_jsonl
from knowledge.services import documents_ingest, source_get_or_create
from tests.e2e.test_workbench_e2e import _call, _sign_in, _wait_live
from tickets import services
from tickets.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO_ARTICLES = Path(__file__).resolve().parents[2] / "knowledge/demo_data/articles.jsonl"
WANTED = {"recover_password", "edit_account", "delete_account", "create_account", "cancel_order"}


def _demo_kb() -> None:
    lines = [
        line
        for line in DEMO_ARTICLES.read_text().splitlines()
        if line.strip() and json.loads(line)["id"] in WANTED
    ]
    source = _call(source_get_or_create, name="demo")
    _call(documents_ingest, source=source, items=parse_jsonl("\n".join(lines)))


def test_agent_drafts_edits_and_sends_a_reply(page, agent, customer):
    _demo_kb()
    ticket = _call(
        services.ticket_create,
        customer=customer,
        subject="Can't log in",
        body="I forgot my password and can't log in, how do I recover it?",
        channel="whatsapp",
    )
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    panel = page.locator(".kb-draft")
    panel.locator(".kb-draft-request").click()
    citation = panel.locator(".kb-draft-citation a").first
    expect(citation).to_have_text("How to: Recover password", timeout=20_000)
    assert citation.get_attribute("href") == "https://support.example.com/help/recover-password"
    drafted = panel.locator(".kb-draft-text").text_content() or ""
    assert "More: How to: Recover password" in drafted

    panel.locator(".kb-draft-use").click()
    composer = page.locator("#composer-body")
    assert composer.input_value() == drafted
    composer.press("Control+Home")
    composer.type("Hi Ada! ")
    edited = composer.input_value()
    assert edited.startswith("Hi Ada! ")
    assert edited != drafted
    page.click("#composer-send")
    expect(page.locator("#ticket-live")).to_contain_text("Hi Ada!", timeout=10_000)

    sent = Message.objects.get(ticket=ticket, direction="outbound", kind="public")
    assert sent.body_text.replace("\r\n", "\n") == edited
    deadline = time.monotonic() + 10
    draft = ReplyDraft.objects.get(ticket=ticket)
    while draft.outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
        draft.refresh_from_db()
    assert (draft.outcome, draft.user_id, draft.sent_message_id) == ("edited", agent.pk, sent.pk)
    assert draft.citations[0]["external_id"] == "recover_password"


def test_using_a_draft_in_note_mode_switches_the_composer_to_a_reply(page, agent, customer):
    """ "Use this draft" makes the composer a public reply: its button, colour and hint say
    so before sending (they said "internal note" while the reply went to the customer).
    A discard the server refuses is said by the panel."""
    _demo_kb()
    ticket = _call(
        services.ticket_create,
        customer=customer,
        subject="Can't log in",
        body="I forgot my password and can't log in, how do I recover it?",
        channel="whatsapp",
    )
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    page.keyboard.press("n")  # the internal-note mode
    expect(page.locator("#composer")).to_have_class("composer is-note")
    expect(page.locator("#composer-send")).to_have_text("Add internal note")
    panel = page.locator(".kb-draft")
    panel.locator(".kb-draft-request").click()
    expect(panel.locator(".kb-draft-citation").first).to_be_visible(timeout=20_000)
    panel.locator(".kb-draft-use").click()
    assert page.locator("input[name=kind][value=public]").is_checked()
    expect(page.locator("#composer")).to_have_class("composer")
    expect(page.locator("#composer-send")).to_have_text("Send reply")
    expect(page.locator("#composer-hint")).to_contain_text("Sent to the customer")

    page.route("**/discard", lambda route: route.fulfill(status=500, body="{}"))
    panel.locator(".kb-draft-discard").click()
    expect(panel.locator(".kb-draft-status")).to_contain_text("could not be discarded")
    expect(panel.locator(".kb-draft-result")).to_be_visible()  # the draft is still there
