"""The web chat widget keeps a typed message as "Sending…" until the server acknowledges
its client id, sends it again when it is not (a frame lost in a half-dead socket), and
shows a message the server refuses as not sent, with the reason and a Retry button. The
client id makes a resend a duplicate: the message is stored exactly once."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from channels_app.adapters.webchat.adapter import visitor_send_bucket
from channels_app.models import InboundEvent
from channels_app.services import channel_account_upsert
from support.redis_client import get_redis
from tests.e2e.conftest import watch_csp
from tests.e2e.test_webchat_files_e2e import _open_widget
from tests.e2e.test_workbench_e2e import _call
from tickets.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The widget's ack timeout is 10 s: a resend takes that long, then its own round trip.
RESEND_TIMEOUT_MS = 30_000

# Every socket the page opens, listed; the first frame sent into one is dropped, as a
# half-dead connection (the network gone, the server not told) drops it.
SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__dropped = 0;
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__sockets.push(ws);
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  const send = Native.prototype.send;
  Native.prototype.send = function (data) {
    if (window.__dropSocketSends > window.__dropped) { window.__dropped += 1; return; }
    return send.call(this, data);
  };
})();
"""


def _chat(
    browser: Any, live_asgi: str, account: Any, drop: int, route: Any = None
) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(base_url=live_asgi)
    if route is not None:
        context.route_web_socket(re.compile(r"/ws/webchat/"), route)
    context.add_init_script(SOCKETS + f"window.__dropSocketSends = {drop};")
    page = context.new_page()
    refused = watch_csp(page)
    _open_widget(page, account)
    page.wait_for_function(
        "() => window.__sockets.length > 0 && window.__sockets[0].readyState === 1",
        timeout=RESEND_TIMEOUT_MS,
    )
    return context, page, refused


def _say(page: Any, text: str) -> None:
    page.fill(".swc-form input[type=text]", text)
    page.keyboard.press("Enter")


def _stored(page: Any, text: str) -> Message:
    deadline = time.monotonic() + RESEND_TIMEOUT_MS / 1000
    while not Message.objects.filter(body_text=text).exists():
        assert time.monotonic() < deadline, f"{text!r} was never stored"
        page.wait_for_timeout(200)  # (not time.sleep: the page's events keep flowing)
    return Message.objects.get(body_text=text)


def test_a_message_lost_in_the_socket_is_sent_again_and_stored_once(
    browser: Any, live_asgi: str
) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=1)
    try:
        _say(page, "Has my order shipped?")
        mine = page.locator(".swc-body[aria-live=polite] .swc-visitor", has_text="shipped")
        expect(mine).to_have_class("swc-msg swc-visitor swc-sending")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        message = _stored(page, "Has my order shipped?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        expect(mine).to_have_class("swc-msg swc-visitor")
        assert page.evaluate("() => window.__dropped") == 1
        # the socket that lost it was closed and another opened; it carries the next one
        page.wait_for_function(
            "() => window.__sockets.length === 2 && window.__sockets[1].readyState === 1",
            timeout=RESEND_TIMEOUT_MS,
        )
        _say(page, "Thanks")
        _stored(page, "Thanks")
        expect(page.locator(".swc-visitor .swc-status")).to_have_count(0)
        # exactly once: one delivery per client id, one message
        events = list(InboundEvent.objects.filter(account=account))
        assert len(events) == 2
        assert Message.objects.filter(body_text="Has my order shipped?").count() == 1
        assert message.channel_message_id in {e.external_id for e in events}
        expect(page.locator(".swc-visitor")).to_have_count(2)
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_refused_message_shows_not_sent_and_retry_sends_it_once(
    browser: Any, live_asgi: str
) -> None:
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=0)
    redis = get_redis()
    try:
        visitor = page.evaluate(
            "token => JSON.parse(localStorage.getItem('support-webchat:' + token)).visitor_id",
            account.webhook_token,
        )
        # this visitor is past its message limit, in this minute and the next
        minute = int(time.time() // 60)
        keys = [f"ratelimit:{visitor_send_bucket(visitor)}:{w}" for w in (minute, minute + 1)]
        for key in keys:
            redis.set(key, 100_000, ex=180)
        _say(page, "Can I change my address?")
        mine = page.locator(".swc-visitor", has_text="change my address")
        expect(mine).to_have_class("swc-msg swc-visitor swc-failed", timeout=RESEND_TIMEOUT_MS)
        expect(mine.locator(".swc-status")).to_have_text(
            "Not sent: Too many messages; wait a moment before sending more."
        )
        assert not InboundEvent.objects.filter(account=account).exists()
        redis.delete(*keys)
        mine.locator("button.swc-retry", has_text="Retry").click()
        _stored(page, "Can I change my address?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        expect(mine.locator(".swc-retry")).to_have_count(0)
        expect(mine).to_have_class("swc-msg swc-visitor")
        assert InboundEvent.objects.filter(account=account).count() == 1
        assert Message.objects.filter(body_text="Can I change my address?").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_message_the_server_could_not_record_is_sent_again(browser: Any, live_asgi: str) -> None:
    """The socket answers the first message as the consumer does when the database is
    down (``unavailable``, ``retry``): the widget keeps it as sending and sends it again."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    answered: list[str] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(frame: str | bytes) -> None:
            data = json.loads(frame)
            if answered:
                server.send(frame)
                return
            answered.append(data["client_id"])
            unavailable = {
                "type": "error",
                "code": "unavailable",
                "message": "The message could not be sent yet; it will be sent again.",
                "retry": True,
                "client_id": data["client_id"],
            }
            ws.send(json.dumps(unavailable))

        ws.on_message(from_page)

    context, page, refused = _chat(browser, live_asgi, account, drop=0, route=route)
    try:
        _say(page, "Are you open on Sunday?")
        mine = page.locator(".swc-visitor", has_text="Sunday")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        _stored(page, "Are you open on Sunday?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        assert len(answered) == 1
        assert InboundEvent.objects.filter(account=account).count() == 1
        assert InboundEvent.objects.get().external_id.endswith(":" + answered[0])
        assert Message.objects.filter(body_text="Are you open on Sunday?").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"
