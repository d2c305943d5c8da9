"""When the visitor's chat session ends (the server refuses it: expired), what was typed
is not dropped at once: the messages not acknowledged stay on screen as not sent, with
their text (Discard), and the next session of the same page (a new chat, a new anonymous
visitor) offers them, Send again or Discard; what was in the message box is put back.
Before, they were deleted with the session.

They are the page's only, for fifteen minutes: never in the browser's storage, so another
tab, a reload or whoever opens the widget later on a shared computer does not see them
(an earlier version kept them in localStorage for a day, shown on the start form to the
next person, whose "Send again" filed them under their own customer)."""

from __future__ import annotations

import re
import time
from typing import Any
from unittest import mock

import pytest
from django.core import signing
from playwright.sync_api import expect

from channels_app.adapters.webchat.adapter import session_issue
from channels_app.models import InboundEvent
from channels_app.services import channel_account_upsert
from tests.e2e.conftest import watch_csp
from tests.e2e.test_webchat_files_e2e import _open_widget
from tests.e2e.test_webchat_send_e2e import RESEND_TIMEOUT_MS, _load_widget, _say, _stored
from tests.e2e.test_workbench_e2e import _call
from tickets.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CARRIED = "token => localStorage.getItem('support-webchat:' + token + ':carried')"
# everything the page's origin keeps in the browser's storage, keys and values
STORED = """() => [localStorage, sessionStorage].map(
    s => Object.keys(s).map(k => k + '=' + s.getItem(k)).join('\\n')).join('\\n')"""
ENDED = "Not sent: your chat session ended before it reached us."
STATE = "token => JSON.parse(localStorage.getItem('support-webchat:' + token))"


def _expired_session(account: Any) -> dict[str, Any]:
    """A genuine session issued two days ago (past WEBCHAT_SESSION_TTL_SECONDS)."""
    then = signing.b62_encode(int(time.time()) - 2 * 86400)
    with mock.patch.object(signing.TimestampSigner, "timestamp", return_value=then):
        return session_issue(account, name="Vera", email="vera@example.com")


def _seed_expired(page: Any, account: Any, texts: list[str]) -> dict[str, Any]:
    """The browser of a visitor whose session has expired, with messages not sent."""
    old = _expired_session(account)
    now = int(time.time() * 1000)
    unsent = [
        {"client_id": "c-" + f"{i:x}" * 24, "text": text, "at": now}
        for i, text in enumerate(texts, start=10)
    ]
    page.goto("/accounts/login/")
    page.evaluate(
        """([token, state, unsent]) => {
            localStorage.setItem('support-webchat:' + token, JSON.stringify(state));
            localStorage.setItem('support-webchat:' + token + ':unsent:' + state.visitor_id,
                                 JSON.stringify(unsent));
        }""",
        [
            account.webhook_token,
            {"session": old["session"], "visitor_id": old["visitor_id"]},
            unsent,
        ],
    )
    return old


def _start(page: Any) -> None:
    page.fill(".swc-start input[type=text]", "Vera")
    page.fill(".swc-start input[type=email]", "vera@example.com")
    page.click(".swc-start button[type=submit]")
    page.locator(".swc-form").wait_for()


def test_unsent_messages_of_an_expired_session_are_offered_in_the_next(
    browser: Any, live_asgi: str
) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    page = context.new_page()
    refused = watch_csp(page)
    try:
        old = _seed_expired(page, account, ["Please refund order 77", "Never mind that"])
        _load_widget(page, account.webhook_token)
        # the server refuses the old session: the chat starts over, the text still shown,
        # each with Discard
        page.locator(".swc-start").wait_for(timeout=RESEND_TIMEOUT_MS)
        refund = page.locator(".swc-carried", has_text="Please refund order 77")
        expect(refund.locator(".swc-status")).to_have_text(
            ENDED + " Start the chat again to send it."
        )
        expect(page.locator(".swc-carried")).to_have_count(2)
        expect(refund.locator("button")).to_have_text(["Discard"])
        assert not InboundEvent.objects.filter(account=account).exists()
        # in this page only: the browser's storage keeps none of it (the unsent list went
        # with the session), so another tab of this browser (the next person at a shared
        # computer) opens the widget on an empty start form
        stored = page.evaluate(STORED)
        assert "refund" not in stored, stored
        assert "Never mind" not in stored, stored
        other = context.new_page()
        other.goto("/accounts/login/")
        _load_widget(other, account.webhook_token)
        other.locator(".swc-start").wait_for()
        other.wait_for_timeout(500)
        expect(other.locator(".swc-carried")).to_have_count(0)
        expect(other.locator(".swc-panel")).not_to_contain_text("refund")
        other.close()
        # Discard on the start form: gone, not offered in the next session
        page.locator(".swc-carried", has_text="Never mind").locator(
            "button", has_text="Discard"
        ).click()
        expect(page.locator(".swc-carried")).to_have_count(1)
        _start(page)
        new_visitor = page.evaluate(STATE, account.webhook_token)["visitor_id"]
        assert new_visitor != old["visitor_id"]
        # offered, not sent by themselves: a new chat, maybe someone else's
        expect(refund.locator(".swc-status")).to_have_text(ENDED)
        expect(refund.locator("button.swc-retry")).to_have_text(["Send again", "Discard"])
        expect(page.locator(".swc-carried")).to_have_count(1)
        page.wait_for_timeout(1500)
        assert not InboundEvent.objects.filter(account=account).exists()
        refund.locator("button", has_text="Send again").click()
        message = _stored(page, "Please refund order 77")
        mine = page.locator(".swc-visitor", has_text="Please refund order 77")
        expect(mine).to_have_count(1)
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        [event] = InboundEvent.objects.filter(account=account)
        assert event.external_id.startswith(new_visitor + ":")
        assert (message.channel_message_id or "").startswith(new_visitor + ":")
        assert not Message.objects.filter(body_text="Never mind that").exists()
        assert page.evaluate(CARRIED, account.webhook_token) is None
        page.reload()
        _load_widget(page, account.webhook_token)
        expect(page.locator(".swc-visitor", has_text="refund")).to_have_count(1)
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-carried")).to_have_count(0)
        assert Message.objects.filter(body_text="Please refund order 77").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_message_refused_and_a_draft_survive_the_end_of_the_session(
    browser: Any, live_asgi: str
) -> None:
    """A message the server refused (kept on the page only, with Retry) and the text in
    the message box are still there when the session ends under them, in this page only:
    a reload forgets them."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    context.route_web_socket(re.compile(r"/ws/webchat/"), lambda ws: ws.close(code=1011))
    ended = [False]

    def http_send(route: Any) -> None:
        route.fulfill(
            status=400,
            json={"error": {"code": "malformed_payload", "message": "Unreadable."}},
        )

    def poll(route: Any) -> None:
        if ended[0]:
            body = {"error": {"code": "session_expired", "message": "expired"}}
            route.fulfill(status=401, json=body)
        else:
            route.continue_()

    context.route(re.compile(r"/api/webhooks/webchat/"), http_send)
    context.route(re.compile(r"/api/webchat/[^/]+/messages"), poll)
    page = context.new_page()
    refused = watch_csp(page)
    try:
        _open_widget(page, account)
        page.locator(".swc-form").wait_for()
        _say(page, "My order number is 5512")
        mine = page.locator(".swc-visitor", has_text="5512")
        expect(mine).to_have_class("swc-msg swc-visitor swc-failed")
        page.fill(".swc-form input[type=text]", "and the parcel was")
        ended[0] = True
        page.locator(".swc-start").wait_for(timeout=RESEND_TIMEOUT_MS)
        expect(page.locator(".swc-carried", has_text="5512")).to_have_count(1)
        ended[0] = False
        _start(page)
        expect(page.locator(".swc-form input[type=text]")).to_have_value("and the parcel was")
        carried = page.locator(".swc-carried", has_text="5512")
        expect(carried.locator("button")).to_have_text(["Send again", "Discard"])
        stored = page.evaluate(STORED)
        assert "5512" not in stored, stored
        assert "parcel" not in stored, stored
        # a reload (the new session goes on) forgets them: kept by the page, not the browser
        page.reload()
        _load_widget(page, account.webhook_token)
        page.locator(".swc-form").wait_for()
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-carried")).to_have_count(0)
        expect(page.locator(".swc-form input[type=text]")).to_have_value("")
        # Discard in the chat, from another end of a session: gone from the page
        _say(page, "Second try 6623")
        expect(page.locator(".swc-visitor", has_text="6623")).to_have_class(
            "swc-msg swc-visitor swc-failed"
        )
        ended[0] = True
        page.locator(".swc-start").wait_for(timeout=RESEND_TIMEOUT_MS)
        ended[0] = False
        _start(page)
        again = page.locator(".swc-carried", has_text="6623")
        again.locator("button", has_text="Discard").click()
        expect(page.locator(".swc-carried")).to_have_count(0)
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_what_an_earlier_version_kept_in_local_storage_is_deleted_unseen(
    browser: Any, live_asgi: str
) -> None:
    """The previous widget kept an ended session's messages for a day in localStorage
    (`:carried`) and showed them to whoever opened the widget next: the first load of this
    one deletes them and shows nothing."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    page = context.new_page()
    now = int(time.time() * 1000)
    left = [{"client_id": "c-" + "c" * 24, "text": "My card ends 4242", "at": now}]
    try:
        page.goto("/accounts/login/")
        page.evaluate(
            "([token, left]) => localStorage.setItem("
            "'support-webchat:' + token + ':carried', JSON.stringify(left))",
            [account.webhook_token, left],
        )
        _load_widget(page, account.webhook_token)
        page.locator(".swc-start").wait_for()
        assert page.evaluate(CARRIED, account.webhook_token) is None
        expect(page.locator(".swc-carried")).to_have_count(0)
        # the words, not the digits: a new visitor's random hex id may hold "4242"
        expect(page.locator(".swc-panel")).not_to_contain_text("card ends 4242")
        _start(page)
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-panel")).not_to_contain_text("card ends 4242")
        assert "card ends 4242" not in page.evaluate(STORED)
    finally:
        context.close()


def test_an_ended_sessions_messages_are_forgotten_after_fifteen_minutes(
    browser: Any, live_asgi: str
) -> None:
    """The tab that saw the session end shows its messages for fifteen minutes: then they
    go, from the start form on screen too, and the next session offers nothing (the next
    person at that computer, maybe)."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    page = context.new_page()
    try:
        _seed_expired(page, account, ["Call me on 0612345678"])
        page.clock.install()  # the browser's clock, moved on below without waiting
        _load_widget(page, account.webhook_token)
        page.locator(".swc-start").wait_for(timeout=RESEND_TIMEOUT_MS)
        expect(page.locator(".swc-carried")).to_have_count(1)
        page.clock.fast_forward("14:00")
        expect(page.locator(".swc-carried")).to_have_count(1)
        page.clock.fast_forward("01:30")
        expect(page.locator(".swc-carried")).to_have_count(0)
        _start(page)
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-carried")).to_have_count(0)
        expect(page.locator(".swc-panel")).not_to_contain_text("0612345678")
        assert not InboundEvent.objects.filter(account=account).exists()
    finally:
        context.close()


def test_a_double_click_on_start_chat_starts_one_session(browser: Any, live_asgi: str) -> None:
    """Two clicks on "Start chat" started two sessions: the socket opened under the first,
    the sends and polls went under the second (two visitors, two guest customers), and
    the visitor read a DOM error. Now the button waits for its answer."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    page = context.new_page()
    refused = watch_csp(page)
    started: list[str] = []
    page.on(
        "request",
        lambda request: started.append(request.url) if request.url.endswith("/session") else None,
    )
    try:
        page.goto("/accounts/login/")
        _load_widget(page, account.webhook_token)
        page.fill(".swc-start input[type=text]", "Vera")
        page.fill(".swc-start input[type=email]", "vera@example.com")
        page.dblclick(".swc-start button[type=submit]")
        page.locator(".swc-form").wait_for()
        _say(page, "One chat please")
        _stored(page, "One chat please")
        page.wait_for_timeout(1000)
        assert len(started) == 1
        expect(page.locator(".swc-err")).to_have_text("")
        expect(page.locator(".swc-form")).to_have_count(1)
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"
