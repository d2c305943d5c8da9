"""The workbench in a real browser against a real ASGI server (see conftest.py)."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from routing.models import RoutingFeedback
from routing.testing import routing_decision_create
from support.models import OutboxEvent
from support.services import api_key_create
from tests.e2e.conftest import ARTIFACTS
from tickets import services
from tickets.models import MESSAGE_BODY_MAX_CHARS, Message, Team, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# How long a live update may take to show before the test gives up: generous, so a loaded
# machine does not fail it (this is not a latency measurement; bench/inbox.py measures that).
LIVE_TIMEOUT_MS = 10_000


def _call(fn: Any, **kwargs: Any) -> Any:
    """Run a service in a fresh thread: Playwright's sync API keeps an event loop running in
    this one, where the outbox relay's ``async_to_sync(group_send)`` cannot run."""
    from django.db import connection

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn(**kwargs)
        except BaseException as exc:
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _sign_in(page: Any, username: str = "agent", password: str = "pw-for-tests-1") -> None:  # noqa: S107
    page.goto("/")
    assert "/accounts/login/" in page.url  # anonymous users are sent to sign in
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _wait_live(page: Any) -> None:
    page.wait_for_selector("#live-status[data-state=live]", timeout=5000)


def test_sign_in_and_new_api_ticket_appears_without_reload(page, live_asgi, agent):
    _, raw_key = _call(api_key_create, name="e2e", user=agent)
    _sign_in(page)
    page.goto("/?view=all")
    _wait_live(page)
    page.evaluate("window.__marker = 'same page'")
    body = json.dumps(
        {
            "subject": "Printer is on fire",
            "description": "Smoke everywhere",
            "channel": "email",
            "customer": {"email": "fire@example.com", "name": "Fiona Fire"},
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        f"{live_asgi}/api/tickets",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Api-Key {raw_key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 201
    page.wait_for_selector("tr.ticket-row >> text=Printer is on fire", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    page.screenshot(path=str(ARTIFACTS / "inbox-live-ticket.png"))


def test_reply_shows_in_timeline_with_delivery_state(page, agent, customer):
    ticket = _call(
        services.ticket_create, customer=customer, subject="Where is my order?", body="?"
    )
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    page.keyboard.press("r")
    page.keyboard.type("It ships tomorrow.")
    page.click("#composer-send")
    entry = page.locator("li.entry-public.dir-outbound", has_text="It ships tomorrow.")
    entry.wait_for(timeout=LIVE_TIMEOUT_MS)
    # An API ticket has no channel back: its replies go by e-mail, and with no e-mail
    # account configured (as here) the reply is marked failed at once, the reason shown
    # live, never left "Queued".
    failed = page.locator("li[data-delivery=failed]", has_text="It ships tomorrow.")
    failed.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "No e-mail account is configured" in failed.inner_text()
    # The entry can arrive over the websocket before the POST's own response clears the
    # composer (htmx:afterRequest): wait for the clearing rather than race it.
    page.wait_for_function(
        "document.getElementById('composer-body').value === ''", timeout=LIVE_TIMEOUT_MS
    )

    message = Message.objects.get(ticket=ticket, body_text="It ships tomorrow.")
    _call(services.message_delivery_update, message=message, status="delivered")
    delivered = page.locator("li[data-delivery=delivered]", has_text="It ships tomorrow.")
    delivered.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Delivered" in delivered.locator(".delivery").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ticket-reply-delivered.png"))


def test_internal_note_is_never_sent_outbound(page, agent, customer):
    ticket = _call(services.ticket_create, customer=customer, subject="VIP complaint", body="!!")
    first_event = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    page.keyboard.press("n")
    assert page.locator("#composer").get_attribute("class") == "composer is-note"
    page.keyboard.type("Customer is grumpy; be nice.")
    page.keyboard.press("Control+Enter")
    note = page.locator("li.entry-internal_note", has_text="Customer is grumpy")
    note.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert note.locator(".delivery").count() == 0
    assert "not sent to the customer" in note.inner_text()

    [message] = Message.objects.filter(ticket=ticket, direction="outbound")
    assert (message.kind, message.delivery_status, message.channel_message_id) == (
        "internal_note",
        "",
        None,
    )
    events = list(
        OutboxEvent.objects.filter(id__gt=first_event).values_list("event_type", "payload")
    )
    assert [(t, p["kind"], p["delivery_status"]) for t, p in events] == [
        ("message.created", "internal_note", "")
    ]


def test_a_refused_reply_says_why_by_the_composer_and_keeps_the_text(page, agent, customer):
    """htmx swaps nothing in for a 4xx: a refused reply (or status change, assignment…)
    did nothing visible at all. Now the reason shows by the form that sent it, the text
    typed stays, and the next try clears it."""
    ticket = _call(services.ticket_create, customer=customer, subject="Long story", body="b")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    too_long = MESSAGE_BODY_MAX_CHARS + 1
    page.evaluate(
        "n => { document.getElementById('composer-body').value = 'x'.repeat(n); }", too_long
    )
    page.click("#composer-send")
    error = page.locator("#composer .form-error")
    error.wait_for(state="visible")
    assert error.text_content() == (
        f"body: at most {MESSAGE_BODY_MAX_CHARS} characters (this one has {too_long})."
    )
    assert error.get_attribute("role") == "alert"
    assert len(page.input_value("#composer-body")) == too_long
    page.fill("#composer-body", "The short version.")
    page.click("#composer-send")
    page.locator("li.entry-public", has_text="The short version.").wait_for()
    assert error.is_hidden()
    assert page.input_value("#composer-body") == ""
    # the next reply is a reply of its own: the composer's key was drawn again after the
    # send (the same key with another text is refused as a form sent already)
    page.fill("#composer-body", "And a second reply.")
    page.click("#composer-send")
    page.locator("li.entry-public", has_text="And a second reply.").wait_for()
    assert error.is_hidden()
    assert list(ticket.messages.values_list("body_text", flat=True).order_by("id")) == [
        "b",
        "The short version.",
        "And a second reply.",
    ]


def test_without_javascript_a_refused_reply_comes_back_with_its_text(
    browser, live_asgi, agent, customer
):
    """A browser without JavaScript posts the composer as a plain form: a refused reply
    came back by a redirect with the reason at the top of the page and the text gone. The
    page comes back with the text, its type (an internal note here) and the reason under
    the composer."""
    ticket = _call(services.ticket_create, customer=customer, subject="Long story", body="b")
    context = browser.new_context(base_url=live_asgi, java_script_enabled=False)
    try:
        page = context.new_page()
        _sign_in(page)
        page.goto(f"/tickets/{ticket.number}/")
        # what needs the script is not offered without it (it said "Connecting…" for ever)
        assert page.is_hidden("#live-status")
        assert page.is_hidden("[data-help-open]")
        too_long = "x" * MESSAGE_BODY_MAX_CHARS + "\nSigned, Ada"
        page.check("#composer input[name=kind][value=internal_note]")
        page.fill("#composer-body", too_long)
        with page.expect_navigation() as sent:
            page.click("#composer-send")
        assert sent.value is not None
        assert sent.value.status == 400
        error = page.locator("#composer .form-error")
        assert error.is_visible()
        sent_chars = len(too_long)  # the form's CR LF line break counted once
        assert error.text_content() == (
            f"body: at most {MESSAGE_BODY_MAX_CHARS} characters (this one has {sent_chars})."
        )
        assert page.input_value("#composer-body") == too_long
        assert page.is_checked("#composer input[name=kind][value=internal_note]")
        page.fill("#composer-body", "The short version.")
        page.click("#composer-send")
        page.locator("li", has_text="The short version.").first.wait_for()
        assert page.url.endswith(f"/tickets/{ticket.number}/")
        assert page.locator("#composer .form-error").is_hidden()
        assert page.input_value("#composer-body") == ""
        page.screenshot(path=str(ARTIFACTS / "without-javascript-refused-reply-end.png"))
    finally:
        context.close()
    assert list(ticket.messages.values_list("kind", "body_text").order_by("id")) == [
        ("public", "b"),
        ("internal_note", "The short version."),
    ]


def test_without_javascript_refused_controls_come_back_with_the_tags_typed(
    browser, live_asgi, agent, customer
):
    """Without JavaScript a refused change to the ticket controls went back by a redirect,
    the reason at the top and the tags typed gone. The page comes back with the tags and
    the priority as sent and the reason at the top of the "Ticket" card."""
    ticket = _call(services.ticket_create, customer=customer, subject="Tags", body="b")
    long_tag = "customer-asked-for-a-refund-of-the-second-order-in-the-spring-sale"
    typed = f"refund, spring-sale, {long_tag}, vip"
    context = browser.new_context(base_url=live_asgi, java_script_enabled=False)
    try:
        page = context.new_page()
        _sign_in(page)
        page.goto(f"/tickets/{ticket.number}/")
        controls = page.locator("#ticket-controls form.stack")
        controls.locator("select[name=priority]").select_option("high")
        controls.locator("input[name=tags]").fill(typed)
        with page.expect_navigation() as sent:
            controls.locator("button[type=submit]").click()
        assert sent.value is not None
        assert sent.value.status == 400
        error = page.locator("#controls-error")
        assert error.is_visible()
        assert error.text_content() == (
            f"tags: {long_tag!r} is 66 characters long; a tag has at most 64 characters."
        )
        assert controls.locator("input[name=tags]").input_value() == typed
        assert controls.locator("select[name=priority]").input_value() == "high"
        controls.locator("input[name=tags]").fill(typed.replace(f"{long_tag}, ", ""))
        controls.locator("button[type=submit]").click()
        page.wait_for_url(f"**/tickets/{ticket.number}/")
        assert page.locator("#controls-error").is_hidden()
        page.screenshot(path=str(ARTIFACTS / "without-javascript-refused-controls-end.png"))
    finally:
        context.close()
    ticket.refresh_from_db()
    assert ticket.priority == "high"
    assert sorted(t.name for t in ticket.tags.all()) == ["refund", "spring-sale", "vip"]


def test_a_refused_routing_verdict_says_why_in_the_panel(page, agent, customer):
    """The panel's script showed the API's error as raw JSON in an alert box."""
    ticket = _call(services.ticket_create, customer=customer, subject="Where is it", body="?")
    team = Team.objects.create(slug="billing", name="Billing")
    routing_decision_create(ticket, team=team, confidence=0.5)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    # the decision replaced since the page was drawn
    page.evaluate(
        "document.querySelectorAll('form.routing-verdict [name=decision_id]')"
        ".forEach(i => { i.value = '999999'; })"
    )
    page.click("form.routing-verdict button:has-text('Override')")
    error = page.locator(".routing-panel .routing-error")
    error.wait_for(state="visible")
    assert error.text_content() == f"decision_id: no routing decision 999999 on {ticket.number}."
    assert dialogs == []
    assert not RoutingFeedback.objects.exists()


def test_merge_moves_timeline_and_old_number_redirects(page, agent, customer):
    target = _call(services.ticket_create, customer=customer, subject="Login broken", body="first")
    source = _call(services.ticket_create, customer=customer, subject="Login again", body="second")
    _sign_in(page)
    page.goto(f"/tickets/{source.number}/")
    _wait_live(page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("details.merge summary")
    page.fill("#merge-form input[name=into]", target.number)
    page.click("#merge-form button[type=submit]")
    page.wait_for_url(f"**/tickets/{target.number}/")
    page.locator("li.entry-public", has_text="second").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert page.locator(".flash").inner_text().strip() == (
        f"{source.number} merged into {target.number}."
    )
    page.goto(f"/tickets/{source.number}/")
    assert page.url.endswith(f"/tickets/{target.number}/")
    assert Ticket.objects.get(pk=source.pk).merged_into_id == target.pk
    page.screenshot(path=str(ARTIFACTS / "ticket-merged.png"))


def test_merge_notice_survives_the_live_refresh_racing_the_form(page, agent, customer):
    """The merge's own live event reaches the old page before the browser has the answer
    to the merge form (held here for a while, as a slow network would): the old page must
    not refresh itself then, or its refresh (a merged ticket answers with a redirect) starts
    a second navigation that cancels the form's and loses the "merged" notice (seen in CI)."""
    target = _call(services.ticket_create, customer=customer, subject="Card lost", body="first")
    source = _call(services.ticket_create, customer=customer, subject="Card gone", body="second")
    _sign_in(page)
    page.goto(f"/tickets/{source.number}/")
    _wait_live(page)
    held: list[tuple[Any, dict[str, Any]]] = []

    def hold(route: Any) -> None:
        # Sent to the server outside the browser (so the browser has no part of the answer
        # yet, not even its cookies): merged there, its live event on the way to the old
        # page. The answer is kept from the browser until the test lets it go.
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            route.request.url,
            data=(route.request.post_data or "").encode(),
            headers=route.request.all_headers(),
            method="POST",
        )
        try:
            answer = urllib.request.build_opener(_NoRedirect).open(request)
        except urllib.error.HTTPError as redirect:  # the 302 to the merged-into ticket
            answer = redirect
        fulfil = {"status": answer.status, "headers": dict(answer.headers.items())}
        held.append((route, fulfil))

    page.route(f"**/tickets/{source.number}/merge", hold)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("details.merge summary")
    page.fill("#merge-form input[name=into]", target.number)
    page.click("#merge-form button[type=submit]", no_wait_after=True)
    page.wait_for_timeout(2000)  # the live event arrives meanwhile
    assert held
    route, fulfil = held[0]
    # The browser may have abandoned the form's navigation by now (the bug).
    with contextlib.suppress(Exception):
        route.fulfill(**fulfil)
    page.wait_for_url(f"**/tickets/{target.number}/")
    page.locator("li.entry-public", has_text="second").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert page.locator(".flash").inner_text(timeout=3000).strip() == (
        f"{source.number} merged into {target.number}."
    )


def test_keyboard_help_and_presence_of_another_agent(page, browser, agent, other_agent, customer):
    ticket = _call(services.ticket_create, customer=customer, subject="Shared ticket", body="hello")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")

    other_context = browser.new_context(base_url=page.url.split("/tickets/")[0])
    other = other_context.new_page()
    _sign_in(other, "other-agent")
    other.goto(f"/tickets/{ticket.number}/")
    _wait_live(other)
    other.click("#composer-body")
    other.keyboard.type("typing…")
    page.locator("#presence", has_text="other-agent is typing").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "ticket-presence.png"))
    other_context.close()


def test_the_reply_box_counts_against_the_channel_limit_and_sends_files(
    page, agent, customer, tmp_path
):
    """A public reply's characters against its channel's limit (none for notes), and files
    attached through the htmx form: the note carries them, the box is cleared after."""
    ticket = _call(services.ticket_create, customer=customer, subject="Label", body="b")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    count = page.locator("#composer-count")
    assert count.is_hidden()  # an API ticket replies by e-mail: no limit of its own
    # the count as a channel with a limit shows it (the limit is the page's data attribute)
    page.evaluate("() => { document.getElementById('composer-body').dataset.maxChars = '20'; }")
    page.keyboard.press("r")
    page.keyboard.type("x" * 25)
    assert count.text_content() == "25 / 20 characters"
    assert count.get_attribute("class") == "hint over"
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    assert count.text_content() == "20 / 20 characters"
    assert count.get_attribute("class") == "hint"
    page.check("#composer input[name=kind][value=internal_note]")
    assert count.is_hidden()
    label = tmp_path / "label.pdf"
    label.write_bytes(b"%PDF-1.4 label")
    page.set_input_files("#composer-files", str(label))
    page.click("#composer-send")
    note = page.locator("li.entry-internal_note", has_text="label.pdf")
    note.wait_for(timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(
        "document.getElementById('composer-files').files.length === 0", timeout=LIVE_TIMEOUT_MS
    )
    [message] = Message.objects.filter(ticket=ticket, direction="outbound")
    assert [(a.filename, a.content_type, a.size) for a in message.attachments.all()] == [
        ("label.pdf", "application/pdf", 14)
    ]


def test_the_reply_box_counts_bytes_where_the_channel_does(page, agent, customer):
    """Instagram counts a reply's text in UTF-8 bytes (data-max-bytes): emoji and accented
    letters take more than one, so the count says bytes and is over before 10 characters."""
    ticket = _call(services.ticket_create, customer=customer, subject="Bytes", body="b")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    count = page.locator("#composer-count")
    page.evaluate("() => { document.getElementById('composer-body').dataset.maxBytes = '10'; }")
    page.keyboard.press("r")
    page.keyboard.type("café 👍!")  # 7 characters: "é" 2 bytes, the emoji 4
    assert count.text_content() == "11 / 10 bytes"
    assert count.get_attribute("class") == "hint over"
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")  # the emoji: one character, 4 bytes
    assert count.text_content() == "6 / 10 bytes"
    assert count.get_attribute("class") == "hint"


def test_without_javascript_a_note_carries_files(browser, live_asgi, agent, customer, tmp_path):
    """The reply form is a multipart form: a browser without JavaScript sends the files
    with the text, and the note shows them on the timeline."""
    ticket = _call(services.ticket_create, customer=customer, subject="Files", body="b")
    context = browser.new_context(base_url=live_asgi, java_script_enabled=False)
    try:
        page = context.new_page()
        _sign_in(page)
        page.goto(f"/tickets/{ticket.number}/")
        invoice = tmp_path / "invoice.pdf"
        invoice.write_bytes(b"%PDF-1.4 invoice")
        page.check("#composer input[name=kind][value=internal_note]")
        page.fill("#composer-body", "The invoice we sent.")
        page.set_input_files("#composer-files", str(invoice))
        with page.expect_navigation():
            page.click("#composer-send")
        page.locator("ul.attachments a[download]", has_text="invoice.pdf").wait_for()
    finally:
        context.close()
    note = Message.objects.get(ticket=ticket, kind="internal_note")
    assert [(a.filename, a.content_type, a.size) for a in note.attachments.all()] == [
        ("invoice.pdf", "application/pdf", 16)
    ]


def test_a_file_too_large_for_the_channel_is_named_at_once(page, agent, customer):
    """Choosing a file larger than the channel takes says so by the file picker at once, in
    the server's words (the file and the limit), before anything is sent; a note takes any
    file up to the message's cap, and a smaller file clears the warning."""
    ticket = _call(
        services.ticket_create, customer=customer, subject="Photo", body="b", channel="whatsapp"
    )
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    warning = page.locator("#composer-files-error")
    files = page.locator("#composer-files")
    assert warning.is_hidden()
    big = {"name": "big.png", "mimeType": "image/png", "buffer": b"\0" * 6_000_000}
    manual = {"name": "manual.pdf", "mimeType": "application/pdf", "buffer": b"%PDF" * 10}
    page.set_input_files("#composer-files", files=[manual, big])
    assert warning.text_content() == "WhatsApp images can be at most 5 MB; big.png is 6 MB."
    assert warning.is_visible()
    assert files.get_attribute("aria-invalid") == "true"
    # an internal note goes nowhere: the channel's sizes do not apply
    page.check("#composer input[name=kind][value=internal_note]")
    assert warning.is_hidden()
    assert files.get_attribute("aria-invalid") is None
    page.check("#composer input[name=kind][value=public]")
    assert warning.text_content() == "WhatsApp images can be at most 5 MB; big.png is 6 MB."
    page.set_input_files("#composer-files", files=[manual])
    assert warning.is_hidden()
    # the cap on one message's files applies to notes too (lowered here: the page's value)
    page.evaluate(
        "() => { document.getElementById('composer-files').dataset.filesMaxTotal = '30'; }"
    )
    page.check("#composer input[name=kind][value=internal_note]")
    assert warning.text_content() == (
        "The files of one message can be at most 30 bytes together; these are 40 bytes."
    )
    assert not Message.objects.filter(ticket=ticket, direction="outbound").exists()
