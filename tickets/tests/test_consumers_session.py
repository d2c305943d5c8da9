"""The workbench socket is bound to the session that signed its user in.

Through the whole websocket stack (``support.asgi.application``: the origin check, then
``support.auth.sessions.SessionAuthMiddleware`` reading the session cookie): a sign-out, a
password change or the session's expiry closed the HTTP side of the session, while a socket
opened with it kept sending live events (its user was read once, at the handshake).

A session that no longer signs the user in closes the socket with 4409 (session changed),
not 4401 (signed out): the browser may hold a newer session (the old one moved to a new
key), and the page reconnects once to find out; the handshake answers 4401 if not."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from support.models import OutboxEvent
from tickets import services
from tickets.models import Customer, Team
from tickets.tests.ws import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

# The close codes the page reads (tickets.consumers, static/js/workbench.js): the wire
# protocol, spelled out here.
CLOSE_SIGNED_OUT = 4401
CLOSE_SESSION_CHANGED = 4409
CLOSED_UNAUTHENTICATED = {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}
CLOSED_SESSION_CHANGED = {"type": "websocket.close", "code": CLOSE_SESSION_CHANGED}


def _socket(cookie: str) -> WebsocketCommunicator:
    """A workbench socket through the ASGI stack, with the session cookie ``cookie``."""
    from support.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/workbench/")
    communicator.scope["headers"] = [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", f"sessionid={cookie}".encode()),
    ]
    communicator.scope["client"] = ("127.0.0.1", 5555)
    communicator.scope["server"] = ("testserver", 80)
    return communicator


async def _connected(cookie: str) -> WebsocketCommunicator:
    communicator = _socket(cookie)
    assert (await communicator.connect())[0]
    assert await communicator.receive_json_from() == {"type": "ready"}
    return communicator


@database_sync_to_async
def _signed_in(user: Any) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


@database_sync_to_async
def _world(agent: Any) -> tuple[Customer, Team]:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    team = Team.objects.create(name="Mine", slug="mine")
    team.members.add(agent)
    return customer, team


@database_sync_to_async
def _ticket(customer: Customer, team: Team, subject: str) -> None:
    services.ticket_create(customer=customer, subject=subject, body="hi", team=team)


async def _events(communicator: WebsocketCommunicator) -> list[Any]:
    out = []
    while not await communicator.receive_nothing(timeout=0.5, interval=0.02):
        out.append(await communicator.receive_json_from())
    return out


@database_sync_to_async
def _sign_in_by_form(client: Client, username: str) -> str:
    response = client.post("/accounts/login/", {"username": username, "password": "pw-for-tests-1"})
    assert response.status_code == 302
    return str(client.cookies["sessionid"].value)


async def test_signing_out_closes_the_socket_of_that_session_at_once(agent, settings):
    """A sign-out announces an access change: the socket re-checks then, not at its next
    periodic check (an hour away here), and the page's one reconnect is refused. The user's
    other session keeps its socket."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 3600
    customer, team = await _world(agent)
    client, cookie = await _signed_in(agent)
    _other_client, other_cookie = await _signed_in(agent)
    signed_out = await _connected(cookie)
    still_in = await _connected(other_cookie)

    response = await database_sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    # the access event goes through Redis to the socket: a loaded machine took over 1 s
    assert await signed_out.receive_output(5) == CLOSED_SESSION_CHANGED
    await signed_out.wait(5)
    assert await _socket(cookie).connect() == (False, CLOSE_SIGNED_OUT)

    await _ticket(customer, team, "after the sign-out")
    received = await _events(still_in)
    assert [m["event"]["event_type"] for m in received] == ["ticket.created", "message.created"]
    await still_in.disconnect()


async def test_a_password_change_closes_the_socket_at_its_next_check(agent, settings):
    """A password change changes the user's session auth hash: the session no longer signs
    the user in (HTTP and a new socket are refused), and the open socket closes instead of
    sending the next events."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0  # re-checked with every batch
    customer, team = await _world(agent)
    _client, cookie = await _signed_in(agent)
    communicator = await _connected(cookie)

    @database_sync_to_async
    def change_password() -> None:
        agent.set_password("a-brand-new-password-42")
        agent.save()

    await change_password()
    assert await _socket(cookie).connect() == (False, CLOSE_SIGNED_OUT)
    await _ticket(customer, team, "after the password change")
    assert await communicator.receive_output(5) == CLOSED_SESSION_CHANGED
    await communicator.wait(5)


async def test_an_expired_session_closes_a_quiet_socket_at_its_heartbeat(agent, settings):
    """No events flow (nothing re-checks with a batch): the page's heartbeat does."""
    from datetime import timedelta

    from django.conf import settings as django_settings
    from django.contrib.sessions.backends.cached_db import KEY_PREFIX
    from django.contrib.sessions.models import Session
    from django.core.cache import caches
    from django.utils import timezone

    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    await _world(agent)
    _client, cookie = await _signed_in(agent)
    communicator = await _connected(cookie)
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_nothing(timeout=0.3)  # a live session: still open

    @database_sync_to_async
    def expire() -> None:
        past = timezone.now() - timedelta(seconds=1)
        Session.objects.filter(session_key=cookie).update(expire_date=past)
        caches[django_settings.SESSION_CACHE_ALIAS].delete(KEY_PREFIX + cookie)

    await expire()
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_output(5) == CLOSED_SESSION_CHANGED
    await communicator.wait(5)
    assert await _socket(cookie).connect() == (False, CLOSE_SIGNED_OUT)


async def test_a_session_whose_hash_no_longer_matches_closes_the_socket(agent, settings):
    """The check compares the session's auth hash with the user's, not only that the
    session exists."""
    from django.contrib.auth import HASH_SESSION_KEY
    from django.contrib.sessions.backends.cached_db import SessionStore

    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    await _world(agent)
    _client, cookie = await _signed_in(agent)
    communicator = await _connected(cookie)

    @database_sync_to_async
    def tamper() -> None:
        session = SessionStore(cookie)
        session[HASH_SESSION_KEY] = "not-the-users-hash"
        session.save()

    await tamper()
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_output(5) == CLOSED_SESSION_CHANGED
    await communicator.wait(5)


async def test_a_user_not_signed_in_by_a_session_keeps_the_user_checks_alone(agent, settings):
    """No session in the scope (the user reached the socket another way): nothing to bind
    the socket to, and it stays open while the user may use the workbench."""
    from tickets.consumers import WorkbenchConsumer

    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    await _world(agent)
    communicator = WebsocketCommunicator(WorkbenchConsumer.as_asgi(), "/ws/workbench/")
    communicator.scope["user"] = agent
    assert (await communicator.connect())[0]
    assert await communicator.receive_json_from() == {"type": "ready"}
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_user_who_lost_access_is_signed_out_whatever_the_session(agent, settings):
    """No longer an agent: 4401 (the page stops), even when the session changed too."""
    from django.contrib.auth.models import Group

    from support.services import agent_access_changed

    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 3600
    await _world(agent)
    client, cookie = await _signed_in(agent)
    communicator = await _connected(cookie)

    @database_sync_to_async
    def demote_and_sign_out() -> None:
        agent.groups.set(Group.objects.none())
        client.logout()
        agent_access_changed(user_ids=[agent.pk], reason="test")

    await demote_and_sign_out()
    assert await communicator.receive_output(5) == CLOSED_UNAUTHENTICATED
    await communicator.wait(5)


async def test_own_password_change_closes_with_session_changed_and_the_new_one_connects(
    supervisor, settings
):
    """The user's own password change moves the browser's session to a new key
    (``update_session_auth_hash``): the browser is still signed in, so its other tabs'
    sockets close with 4409 (the page reconnects, with the new cookie), not 4401 ("Signed
    out", for good, while the user was signed in)."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    await _world(supervisor)
    browser = Client()
    old = await _sign_in_by_form(browser, supervisor.username)
    tab = await _connected(old)
    response = await database_sync_to_async(browser.post)(
        "/admin/password_change/",
        {
            "old_password": "pw-for-tests-1",
            "new_password1": "An0ther-long-passphrase!",
            "new_password2": "An0ther-long-passphrase!",
        },
    )
    assert response.status_code == 302
    new = browser.cookies["sessionid"].value
    assert new != old
    await tab.send_json_to({"type": "heartbeat"})
    assert await tab.receive_output(5) == CLOSED_SESSION_CHANGED
    await tab.wait(5)
    reconnected = await _connected(new)  # what the page does next
    await reconnected.disconnect()


async def test_a_secret_key_rotation_keeps_the_sign_in_through_socket_and_http(agent, settings):
    """After a ``SECRET_KEY`` rotation (the old key in ``SECRET_KEY_FALLBACKS``) a session
    still signs its user in. The handshake took the session for a forged one (channels'
    ``get_user`` ignores the fallbacks) and flushed it: the page's reconnect signed the
    browser out over HTTP too. The first HTTP request then moves the session to a new key
    (``get_user``): the open socket closes with 4409 and the new key connects."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    await _world(agent)
    browser = Client()
    old = await _sign_in_by_form(browser, agent.username)
    previous_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-rotated-secret-key-for-the-test-0123456789abcdefghij"
    settings.SECRET_KEY_FALLBACKS = [previous_key]

    tab = await _connected(old)  # the handshake honours the fallback, writes nothing
    await tab.send_json_to({"type": "heartbeat"})
    assert await tab.receive_nothing(timeout=0.3)
    response = await database_sync_to_async(browser.get)("/")
    assert response.status_code == 200
    new = browser.cookies["sessionid"].value
    assert new != old

    await tab.send_json_to({"type": "heartbeat"})
    assert await tab.receive_output(5) == CLOSED_SESSION_CHANGED
    await tab.wait(5)
    reconnected = await _connected(new)
    await reconnected.disconnect()
    assert (await database_sync_to_async(browser.get)("/")).status_code == 200


async def test_the_handshake_never_writes_to_the_session(agent):
    """A session whose hash does not match is refused (4401) and left as it was: channels'
    ``get_user`` flushed it, deleting the browser's session from a socket handshake."""
    from django.contrib.auth import HASH_SESSION_KEY
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.contrib.sessions.models import Session

    _client, cookie = await _signed_in(agent)

    @database_sync_to_async
    def tamper() -> None:
        session = SessionStore(cookie)
        session[HASH_SESSION_KEY] = "not-the-users-hash"
        session.save()

    @database_sync_to_async
    def stored() -> list[Any]:
        return list(Session.objects.filter(session_key=cookie).values_list("session_data"))

    await tamper()
    before = await stored()
    assert await _socket(cookie).connect() == (False, CLOSE_SIGNED_OUT)
    assert await stored() == before != []


async def test_the_admins_sign_out_closes_the_socket_at_once(supervisor, settings):
    """Every sign-out announces it (``user_logged_out``), not only the workbench's view:
    after the admin's, the socket kept sending events until its next periodic check."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 3600
    customer, team = await _world(supervisor)
    browser = Client()
    cookie = await _sign_in_by_form(browser, supervisor.username)
    tab = await _connected(cookie)
    response = await database_sync_to_async(browser.post)("/admin/logout/")
    assert response.status_code in (200, 302)
    assert await tab.receive_output(5) == CLOSED_SESSION_CHANGED
    await tab.wait(5)
    await _ticket(customer, team, "after the admin sign-out")
    assert await _socket(cookie).connect() == (False, CLOSE_SIGNED_OUT)


@pytest.mark.django_db
def test_a_sign_out_announces_one_access_change(client, agent):
    """The workbench's sign-out records one ``agent.access_changed`` for the user (the
    ``user_logged_out`` receiver; the view itself records none), and an anonymous one
    none."""
    client.force_login(agent)
    client.post("/accounts/logout/")
    client.post("/accounts/logout/")  # no longer signed in
    events = OutboxEvent.objects.filter(event_type="agent.access_changed")
    assert [e.payload for e in events] == [{"user_id": agent.pk, "reason": "signed out"}]
