"""The web chat widget keeps a typed message as "Sending…" until the server acknowledges
its client id, sends it again when it is not (a frame lost in a socket, a late ack, a
dead socket, a reload of the page), and shows a message the server refuses as not sent,
with the reason and a Retry button. The client id makes a resend a duplicate: the message
is stored exactly once. A late ack costs no reconnect; a socket that answers no ping
does."""

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
from tests.e2e.test_webchat_files_e2e import PHOTO, _open_widget
from tests.e2e.test_workbench_e2e import _call
from tickets.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The widget's ack timeout is 10 s: a resend takes that long, then its own round trip.
RESEND_TIMEOUT_MS = 30_000
# A socket is found dead when it answers no ping (sent at the ack timeout) in 20 s.
DEAD_SOCKET_TIMEOUT_MS = 60_000

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
        # the session went in the handshake's subprotocol header, not in the URL (access
        # logs); the server accepted the widget's "webchat" subprotocol
        assert page.evaluate("() => [window.__sockets[0].url, window.__sockets[0].protocol]") == [
            f"{live_asgi.replace('http', 'ws', 1)}/ws/webchat/{account.webhook_token}/",
            "webchat",
        ]
        _say(page, "Has my order shipped?")
        mine = page.locator(".swc-body[aria-live=polite] .swc-visitor", has_text="shipped")
        expect(mine).to_have_class("swc-msg swc-visitor swc-sending")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        message = _stored(page, "Has my order shipped?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        expect(mine).to_have_class("swc-msg swc-visitor")
        assert page.evaluate("() => window.__dropped") == 1
        # sent again over HTTP; the socket answered its ping, so it stays and carries the
        # next one (it was closed and reopened: a reconnect for every late ack)
        page.wait_for_timeout(1000)
        assert page.evaluate(
            "() => window.__sockets.length === 1 && window.__sockets[0].readyState === 1"
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
        assert page.evaluate("() => window.__sockets.length") == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_socket_that_answers_no_ping_is_closed_and_opened_again(
    browser: Any, live_asgi: str
) -> None:
    """The message and the ping sent after its ack timeout are both lost (a half-dead
    socket): the message goes over HTTP, and the socket is replaced."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=2)
    try:
        _say(page, "Is anyone there?")
        mine = page.locator(".swc-visitor", has_text="anyone there")
        _stored(page, "Is anyone there?")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        page.wait_for_function(
            "() => window.__sockets.length === 2 && window.__sockets[1].readyState === 1",
            timeout=DEAD_SOCKET_TIMEOUT_MS,
        )
        assert page.evaluate("() => [window.__dropped, window.__sockets[0].readyState]") == [
            2,
            3,  # CLOSED
        ]
        _say(page, "Hello again")
        _stored(page, "Hello again")
        assert InboundEvent.objects.filter(account=account).count() == 2
        assert Message.objects.filter(body_text="Is anyone there?").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_late_ack_does_not_cost_a_reconnect(browser: Any, live_asgi: str) -> None:
    """The server records the message but its ack comes after 12 s (a slow database):
    the widget sends it again over HTTP at 10 s (answered as a duplicate) and keeps the
    socket, which answered its ping. It used to close the socket and open another."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    held: list[tuple[Any, str | bytes]] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_server(frame: str | bytes) -> None:
            if not held and json.loads(frame).get("type") == "ack":
                held.append((ws, frame))  # sent to the page later, by the test
                return
            ws.send(frame)

        server.on_message(from_server)

    context, page, refused = _chat(browser, live_asgi, account, drop=0, route=route)
    try:
        _say(page, "Do you ship to Norway?")
        mine = page.locator(".swc-visitor", has_text="Norway")
        _stored(page, "Do you ship to Norway?")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        # confirmed by the HTTP resend after the ack timeout, with the socket kept
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        assert len(held) == 1
        page.wait_for_timeout(2000)
        ws, ack = held[0]
        ws.send(ack)  # the late ack: nothing more happens
        page.wait_for_timeout(1000)
        assert page.evaluate(
            "() => window.__sockets.length === 1 && window.__sockets[0].readyState === 1"
        )
        expect(mine).to_have_class("swc-msg swc-visitor")
        assert InboundEvent.objects.filter(account=account).count() == 1
        assert Message.objects.filter(body_text="Do you ship to Norway?").count() == 1
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def _load_widget(page: Any, token: str) -> None:
    """The widget's script on the current page (after a reload: the chat goes on)."""
    page.evaluate(
        """token => {
            const s = document.createElement("script");
            s.src = "/static/webchat/widget.js";
            s.dataset.token = token;
            document.body.appendChild(s);
        }""",
        token,
    )
    page.locator(".swc-btn").wait_for()
    page.click(".swc-btn")


def test_a_message_sending_when_the_page_is_reloaded_is_sent_after_it_once(
    browser: Any, live_asgi: str
) -> None:
    """Nothing the visitor typed is lost: a message unacknowledged when the page goes
    (reload, another page of the site, a crashed tab) is kept in the browser's storage,
    shown again as "Sending…" and sent once the server answers; stored once, then
    forgotten by the browser. Before, it lived only in the page."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    blocked = [True]

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(frame: str | bytes) -> None:
            if not blocked[0]:  # else lost: nothing reaches the server
                server.send(frame)

        ws.on_message(from_page)

    context, page, refused = _chat(browser, live_asgi, account, drop=0, route=route)

    def http_send(route: Any) -> None:
        if blocked[0]:
            route.fulfill(status=503, json={"error": {"code": "unavailable", "message": "down"}})
        else:
            route.continue_()

    context.route(re.compile(r"/api/webhooks/webchat/"), http_send)
    text = "Please cancel order 4411"
    kept = "token => localStorage.getItem('support-webchat:' + token + ':unsent:' + " + (
        "JSON.parse(localStorage.getItem('support-webchat:' + token)).visitor_id)"
    )
    try:
        _say(page, text)
        mine = page.locator(".swc-visitor", has_text="cancel order")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        [entry] = json.loads(page.evaluate(kept, account.webhook_token))
        assert (entry["text"], entry["client_id"][:2]) == (text, "c-")
        page.reload()
        _load_widget(page, account.webhook_token)
        mine = page.locator(".swc-visitor", has_text="cancel order")
        expect(mine.locator(".swc-status")).to_have_text("Sending…")
        expect(mine).to_have_class("swc-msg swc-visitor swc-sending")
        assert not InboundEvent.objects.filter(account=account).exists()
        blocked[0] = False  # the server works again
        _stored(page, text)
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        assert page.evaluate(kept, account.webhook_token) is None
        [event] = InboundEvent.objects.filter(account=account)
        assert event.external_id.endswith(":" + entry["client_id"])
        assert Message.objects.filter(body_text=text).count() == 1
        # shown once, also after another reload (the poll lists it, storage has nothing)
        page.reload()
        _load_widget(page, account.webhook_token)
        mine = page.locator(".swc-visitor", has_text="cancel order")
        expect(mine).to_have_count(1)
        page.wait_for_timeout(1000)
        expect(mine).to_have_count(1)
        expect(mine).to_have_class("swc-msg swc-visitor")
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_file_sending_when_the_page_is_reloaded_is_named_as_not_sent(
    browser: Any, live_asgi: str, tmp_path: Any
) -> None:
    """The browser keeps no copy of a file: after a reload the visitor reads which one was
    not sent, to attach it again (once: it is not kept after that)."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=0)
    context.route(re.compile(r"/api/webchat/[^/]+/files$"), lambda route: None)  # no answer
    try:
        page.fill(".swc-form input[type=text]", "It arrived broken")
        photo = tmp_path / "kettle.png"
        photo.write_bytes(PHOTO)
        page.set_input_files(".swc-form input[type=file]", str(photo))
        expect(page.locator(".swc-visitor .swc-note")).to_have_text("kettle.png: sending…")
        page.reload()
        _load_widget(page, account.webhook_token)
        mine = page.locator(".swc-visitor", has_text="It arrived broken")
        expect(mine.locator(".swc-note")).to_have_text(
            "kettle.png: not sent; please attach it again."
        )
        page.reload()
        _load_widget(page, account.webhook_token)
        page.locator(".swc-form").wait_for()
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-visitor")).to_have_count(0)
        assert not InboundEvent.objects.filter(account=account).exists()
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_the_chat_works_without_the_browsers_storage(browser: Any, live_asgi: str) -> None:
    """Private modes and blocked site data make ``localStorage`` throw: the widget stopped
    at its first line. Now it keeps the chat in the page alone."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    context.add_init_script(
        """Object.defineProperty(window, "localStorage", {
            get() { throw new DOMException("The operation is insecure.", "SecurityError"); }
        });"""
    )
    page = context.new_page()
    refused = watch_csp(page)
    try:
        _open_widget(page, account)
        _say(page, "No storage here")
        _stored(page, "No storage here")
        mine = page.locator(".swc-visitor", has_text="No storage here")
        expect(mine.locator(".swc-status")).to_have_count(0, timeout=RESEND_TIMEOUT_MS)
        expect(page.locator(".swc-err")).to_have_text("")
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_chat_that_cannot_reach_the_server_says_so(browser: Any, live_asgi: str) -> None:
    """The socket is closed at connect (as when the database fails there) and the poll
    gets the server's error page: the visitor reads that the chat keeps trying (it read
    a JSON parser's complaint), and nothing once the server answers again."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context = browser.new_context(base_url=live_asgi)
    context.add_init_script(SOCKETS + "window.__dropSocketSends = 0;")
    page = context.new_page()
    refused = watch_csp(page)
    down = [True]

    def socket(ws: Any) -> None:
        if down[0]:
            ws.close(code=1011)
        else:
            ws.connect_to_server()

    def poll(route: Any) -> None:
        if down[0]:
            route.fulfill(status=500, body="<h1>Server Error (500)</h1>", content_type="text/html")
        else:
            route.continue_()

    try:
        _open_widget(page, account)
        page.locator(".swc-form").wait_for()
        context.route_web_socket(re.compile(r"/ws/webchat/"), socket)
        context.route(re.compile(r"/api/webchat/[^/]+/messages"), poll)
        page.reload()
        _load_widget(page, account.webhook_token)
        expect(page.locator(".swc-err")).to_have_text(
            "The chat cannot reach us right now; it keeps trying, and your messages will "
            "be sent when it is back.",
            timeout=RESEND_TIMEOUT_MS,
        )
        down[0] = False
        expect(page.locator(".swc-err")).to_have_text("", timeout=RESEND_TIMEOUT_MS)
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


UNSENT = "token => localStorage.getItem('support-webchat:' + token + ':unsent:' + " + (
    "JSON.parse(localStorage.getItem('support-webchat:' + token)).visitor_id)"
)


def test_a_message_refused_for_good_is_not_kept_for_the_next_load(
    browser: Any, live_asgi: str
) -> None:
    """A message the server refuses (malformed, too long) stays on the page with Retry,
    but is not kept in the browser's storage: it was not resent at every later load."""
    account = _call(channel_account_upsert, channel="webchat", name="site")

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(frame: str | bytes) -> None:
            data = json.loads(frame)
            if data.get("client_id"):  # the visitor's message: refused as the server does
                ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "code": "malformed_payload",
                            "message": "The message could not be read.",
                            "client_id": data["client_id"],
                        }
                    )
                )
            else:
                server.send(frame)

        ws.on_message(from_page)

    context, page, refused = _chat(browser, live_asgi, account, drop=0, route=route)
    try:
        _say(page, "Where is my parcel?")
        mine = page.locator(".swc-visitor", has_text="my parcel")
        expect(mine).to_have_class("swc-msg swc-visitor swc-failed", timeout=RESEND_TIMEOUT_MS)
        expect(mine.locator("button.swc-retry")).to_have_count(1)
        assert page.evaluate(UNSENT, account.webhook_token) is None
        page.reload()
        _load_widget(page, account.webhook_token)
        page.wait_for_timeout(1000)
        expect(page.locator(".swc-visitor", has_text="my parcel")).to_have_count(0)
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_kept_message_past_its_day_is_deleted_from_the_browser(
    browser: Any, live_asgi: str
) -> None:
    """Unsent messages older than a day are not resent, and not left on the device either
    (a shared computer): the next load deletes them from storage."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=0)
    try:
        page.evaluate(
            """token => {
                const visitor = JSON.parse(localStorage.getItem('support-webchat:' + token))
                    .visitor_id;
                localStorage.setItem('support-webchat:' + token + ':unsent:' + visitor,
                    JSON.stringify([{client_id: 'c-0123456789abcdef01234567',
                                     text: 'my card number is private',
                                     at: Date.now() - 2 * 86400000}]));
            }""",
            account.webhook_token,
        )
        page.reload()
        _load_widget(page, account.webhook_token)
        page.wait_for_function(
            f"() => ({UNSENT})({json.dumps(account.webhook_token)}) === null",
            timeout=RESEND_TIMEOUT_MS,
        )
        expect(page.locator(".swc-visitor", has_text="private")).to_have_count(0)
        assert not InboundEvent.objects.filter(account=account).exists()
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"


def test_a_file_too_large_leaves_the_text_typed_with_it(
    browser: Any, live_asgi: str, tmp_path: Any
) -> None:
    """The widget refuses a file over the session's ``upload_max_bytes`` before sending
    anything; the text typed to go with it stays in the message box (it was cleared, and
    lost, with the file refused)."""
    account = _call(channel_account_upsert, channel="webchat", name="site")
    context, page, refused = _chat(browser, live_asgi, account, drop=0)
    try:
        page.evaluate(
            """token => {
                const key = 'support-webchat:' + token;
                const state = JSON.parse(localStorage.getItem(key));
                state.upload_max_bytes = 1000000;
                localStorage.setItem(key, JSON.stringify(state));
            }""",
            account.webhook_token,
        )
        page.reload()
        _load_widget(page, account.webhook_token)
        page.fill(".swc-form input[type=text]", "Here is the video of the fault")
        video = tmp_path / "fault.png"
        video.write_bytes(PHOTO + b"\x00" * 1_000_000)
        page.set_input_files(".swc-form input[type=file]", str(video))
        expect(page.locator(".swc-err")).to_have_text("This file is too large (at most 1 MB).")
        expect(page.locator(".swc-form input[type=text]")).to_have_value(
            "Here is the video of the fault"
        )
        expect(page.locator(".swc-visitor")).to_have_count(0)
        assert not InboundEvent.objects.filter(account=account).exists()
    finally:
        context.close()
    assert refused == [], "Content-Security-Policy violations"
