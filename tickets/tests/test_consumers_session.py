"""The workbench socket is bound to the session that signed its user in.

Through the whole websocket stack (``support.asgi.application``: the origin check, then
``AuthMiddlewareStack`` reading the session cookie): a sign-out, a password change or the
session's expiry closed the HTTP side of the session, while a socket opened with it kept
sending live events (its user was read once, at the handshake)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from tickets import services
from tickets.models import Customer, Team
from tickets.tests.ws import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_UNAUTHENTICATED = {"type": "websocket.close", "code": 4401}


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


async def test_signing_out_closes_the_socket_of_that_session_at_once(agent, settings):
    """The sign-out view announces an access change: the socket re-checks then, not at its
    next periodic check (an hour away here). The user's other session keeps its socket."""
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 3600
    customer, team = await _world(agent)
    client, cookie = await _signed_in(agent)
    _other_client, other_cookie = await _signed_in(agent)
    signed_out = await _connected(cookie)
    still_in = await _connected(other_cookie)

    response = await database_sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    # the access event goes through Redis to the socket: a loaded machine took over 1 s
    assert await signed_out.receive_output(5) == CLOSED_UNAUTHENTICATED
    await signed_out.wait(5)

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
    assert await _socket(cookie).connect() == (False, 4401)
    await _ticket(customer, team, "after the password change")
    assert await communicator.receive_output(5) == CLOSED_UNAUTHENTICATED
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
    assert await communicator.receive_output(5) == CLOSED_UNAUTHENTICATED
    await communicator.wait(5)


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
    assert await communicator.receive_output(5) == CLOSED_UNAUTHENTICATED
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
