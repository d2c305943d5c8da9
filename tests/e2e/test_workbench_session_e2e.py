"""The workbench page when its socket's session changes (static/js/workbench.js, close
codes of tickets/consumers.py), in a real browser against a real ASGI server.

A socket whose session no longer signs its user in closes with 4409: the page reconnects
once, at once, with the browser's cookie. A browser whose session moved to a new key (the
user's own password change, a sign-in again, a ``SECRET_KEY`` rotation) carries on; one
that is signed out is refused and says so. The socket closed with 4401 and the page said
"Signed out", for good, while the user was still signed in."""

from __future__ import annotations

import time
from typing import Any

import pytest

from support.services import agent_access_changed
from tests.e2e.test_workbench_e2e import _call, _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _sockets(page: Any) -> list[Any]:
    opened: list[Any] = []
    page.on("websocket", lambda ws: opened.append(ws) if "/ws/workbench/" in ws.url else None)
    return opened


def _session_key(page: Any) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")


def _wait_for(page: Any, condition: Any, seconds: float = 10) -> None:
    """Playwright reports sockets while it runs: wait in it, not in ``time.sleep``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(100)


def _ready(page: Any) -> list[Any]:
    opened = _sockets(page)
    _sign_in(page)
    page.wait_for_selector("#live-status[data-state=live]", timeout=5000)
    assert len(opened) == 1
    return opened


def _move_session(old: str) -> str:
    from django.conf import settings
    from django.utils.module_loading import import_string

    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(old)
    store.cycle_key()  # what a password change or a sign-in does to a signed-in session
    store.save()
    return str(store.session_key)


def _delete_session(key: str) -> None:
    from django.conf import settings
    from django.utils.module_loading import import_string

    import_string(f"{settings.SESSION_ENGINE}.SessionStore")(key).delete()


def test_a_session_moved_to_a_new_key_reconnects_and_stays_live(page, live_asgi, agent):
    opened = _ready(page)
    new = _call(_move_session, old=_session_key(page))
    page.context.add_cookies([{"name": "sessionid", "value": new, "url": live_asgi}])
    _call(agent_access_changed, user_ids=[agent.pk], reason="test")  # re-checked now

    _wait_for(page, lambda: len(opened) == 2 and opened[0].is_closed())
    page.wait_for_selector("#live-status[data-state=live]", timeout=5000)
    page.wait_for_timeout(1000)
    assert page.get_attribute("#live-status", "data-state") == "live"
    assert len(opened) == 2
    assert not opened[1].is_closed()


def test_a_signed_out_browser_reconnects_once_and_says_signed_out(page, live_asgi, agent):
    opened = _ready(page)
    _call(_delete_session, key=_session_key(page))
    _call(agent_access_changed, user_ids=[agent.pk], reason="test")

    page.wait_for_selector("#live-status[data-state=off]", timeout=10_000)
    assert page.text_content("#live-status") == "Signed out"
    page.wait_for_timeout(3000)  # no further attempt
    assert len(opened) == 2
