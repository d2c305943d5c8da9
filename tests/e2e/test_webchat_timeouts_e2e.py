"""A network that never answers (a captive portal, a stalled proxy) does not keep the web
chat widget waiting for ever: every request has a deadline (``FETCH_TIMEOUT_MS``, 15 s),
after which it counts as a network error. A message is then tried again (and says so),
and the chat says it cannot reach the server. Before, such a send stayed "Sending…" for
ever and its retries never ran; polls piled up, one every 4 s."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from channels_app.models import InboundEvent
from channels_app.services import channel_account_upsert
from tests.e2e.conftest import watch_csp
from tests.e2e.test_webchat_files_e2e import _open_widget
from tests.e2e.test_webchat_send_e2e import RESEND_TIMEOUT_MS, _say, _stored
from tests.e2e.test_workbench_e2e import _call
from tickets.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The widget's request deadline is 15 s; then a pause of 2 s before the next try.
GIVEN_UP_TIMEOUT_MS = 25_000


def _no_socket(context: Any) -> None:
    """Every socket is closed at connect: the widget sends over HTTP and polls."""
    context.route_web_socket(re.compile(r"/ws/webchat/"), lambda ws: ws.close(code=1011))


def test_a_send_nobody_answers_is_given_up_and_sent_again(browser: Any, live_asgi: str) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    _no_socket(context)
    hung: list[Any] = []

    def http_send(route: Any) -> None:
        if not hung:
            hung.append(route)  # never answered, as behind a stalled proxy
            return
        route.continue_()

    context.route(re.compile(r"/api/webhooks/webchat/"), http_send)
    page = context.new_page()
    refused = watch_csp(page)
    try:
        _open_widget(page, account)
        page.locator(".swc-form").wait_for()
        _say(page, "Is my refund through?")
        mine = page.locator(".swc-visitor", has_text="refund")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        # given up after the deadline: said so while it waits for its next try
        expect(mine.locator(".swc-status")).to_have_text(
            "Not sent yet: no answer from the server; trying again…",
            timeout=GIVEN_UP_TIMEOUT_MS,
        )
        expect(mine).to_have_class("swc-msg swc-visitor swc-sending")
        _stored(page, "Is my refund through?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        expect(mine).to_have_class("swc-msg swc-visitor")
        assert len(hung) == 1
        assert InboundEvent.objects.filter(account=account).count() == 1
        assert Message.objects.filter(body_text="Is my refund through?").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_polls_nobody_answers_say_so_and_do_not_pile_up(browser: Any, live_asgi: str) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    _no_socket(context)
    down = [False]
    hung: list[Any] = []

    def poll(route: Any) -> None:
        if down[0]:
            hung.append(route)  # never answered
        else:
            route.continue_()

    context.route(re.compile(r"/api/webchat/[^/]+/messages"), poll)
    page = context.new_page()
    refused = watch_csp(page)
    try:
        _open_widget(page, account)
        page.locator(".swc-form").wait_for()
        down[0] = True
        expect(page.locator(".swc-err")).to_have_text(
            "The chat cannot reach us right now; it keeps trying, and your messages will "
            "be sent when it is back.",
            timeout=GIVEN_UP_TIMEOUT_MS,
        )
        # one poll at a time: in 20 s, at most two (one every 4 s piled up five)
        page.wait_for_timeout(3000)
        assert 1 <= len(hung) <= 2
        down[0] = False
        expect(page.locator(".swc-err")).to_have_text("", timeout=GIVEN_UP_TIMEOUT_MS)
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"
