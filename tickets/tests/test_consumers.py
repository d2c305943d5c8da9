from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import AnonymousUser

from support.models import OutboxEvent
from tickets import services
from tickets.consumers import WorkbenchConsumer
from tickets.models import Customer, Team
from tickets.tests.ws import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


def _communicator(user, since=None):
    path = "/ws/workbench/" + (f"?since={since}" if since is not None else "")
    communicator = WebsocketCommunicator(WorkbenchConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    return communicator


async def _drain(communicator, timeout=0.3):
    out = []
    while not await communicator.receive_nothing(timeout=timeout, interval=0.02):
        out.append(await communicator.receive_json_from())
    return out


@database_sync_to_async
def _world(agent):
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    mine = Team.objects.create(name="Mine", slug="mine")
    other = Team.objects.create(name="Other", slug="other")
    mine.members.add(agent)
    return customer, mine, other


@database_sync_to_async
def _ticket(customer, team, subject):
    return services.ticket_create(customer=customer, subject=subject, body="hi", team=team)


@database_sync_to_async
def _last_event_id():
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


async def test_anonymous_and_non_agents_are_refused(outsider):
    for user in (AnonymousUser(), outsider):
        communicator = _communicator(user)
        connected, code = await communicator.connect()
        assert (connected, code) == (False, 4401)


async def test_agent_receives_only_visible_tickets(agent):
    customer, mine, other = await _world(agent)
    communicator = _communicator(agent)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    visible = await _ticket(customer, mine, "mine")
    await _ticket(customer, other, "other")
    unteamed = await _ticket(customer, None, "no team")
    received = await _drain(communicator)
    await communicator.disconnect()
    assert [(m["event"]["event_type"], m["event"]["ticket_id"]) for m in received] == [
        ("ticket.created", visible.pk),
        ("message.created", visible.pk),
        ("ticket.created", unteamed.pk),
        ("message.created", unteamed.pk),
    ]
    assert all("replay" not in m for m in received)


async def test_an_idle_socket_outlives_the_channel_layers_blocking_wait(agent):
    """Nothing happens for longer than the layer's blocking pop (and redis-py 8's default
    5 s read timeout): the socket still delivers the next event. With the read timeout
    shorter than the pop, the consumer died with a Redis TimeoutError after ~5 s idle."""
    customer, mine, _ = await _world(agent)
    communicator = _communicator(agent)
    await communicator.connect()
    assert await communicator.receive_json_from() == {"type": "ready"}
    await asyncio.sleep(RedisChannelLayer.brpop_timeout + 2)
    ticket = await _ticket(customer, mine, "after a quiet spell")
    received = await _drain(communicator)
    await communicator.disconnect()
    assert [m["event"]["ticket_id"] for m in received] == [ticket.pk] * 2


async def test_supervisor_receives_everything(supervisor, agent):
    customer, _, other = await _world(agent)
    communicator = _communicator(supervisor)
    await communicator.connect()
    await communicator.receive_json_from()
    hidden_from_agent = await _ticket(customer, other, "other")
    received = await _drain(communicator)
    await communicator.disconnect()
    assert [m["event"]["ticket_id"] for m in received] == [hidden_from_agent.pk] * 2


async def test_catch_up_after_reconnect_replays_missed_events(agent):
    customer, mine, other = await _world(agent)
    first = _communicator(agent)
    await first.connect()
    await first.receive_json_from()
    seen = await _ticket(customer, mine, "seen live")
    live = await _drain(first)
    await first.disconnect()
    last_seen = live[-1]["event"]["id"]
    # While disconnected: one visible and one invisible ticket.
    missed = await _ticket(customer, mine, "missed")
    await _ticket(customer, other, "not mine")
    second = _communicator(agent, since=last_seen)
    await second.connect()
    replayed = await _drain(second)
    await second.disconnect()
    assert replayed[-1] == {"type": "ready"}
    events = [m["event"] for m in replayed[:-1]]
    assert all(m["replay"] is True for m in replayed[:-1])
    assert [(e["event_type"], e["ticket_id"]) for e in events] == [
        ("ticket.created", missed.pk),
        ("message.created", missed.pk),
    ]
    assert all(e["id"] > last_seen for e in events)
    assert seen.pk not in {e["ticket_id"] for e in events}


async def test_presence_shows_who_views_and_types(agent, other_agent):
    customer, _, _ = await _world(agent)
    ticket = await _ticket(customer, None, "shared")
    a, b = _communicator(agent), _communicator(other_agent)
    for c in (a, b):
        await c.connect()
        await c.receive_json_from()
    await _drain(a, 0.2)
    await _drain(b, 0.2)
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    await b.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "typing"})
    seen_by_a = await _drain(a)
    assert seen_by_a[-1] == {
        "type": "presence",
        "ticket_id": ticket.pk,
        "agents": [
            {"id": agent.pk, "name": "agent", "state": "viewing"},
            {"id": other_agent.pk, "name": "other-agent", "state": "typing"},
        ],
    }
    await b.disconnect()
    after_leave = await _drain(a)
    assert after_leave[-1]["agents"] == [{"id": agent.pk, "name": "agent", "state": "viewing"}]
    await a.disconnect()


async def _presence_pair(agent, other_agent):
    """A ticket both agents view, and their sockets, drained of the viewing broadcasts."""
    customer, _, _ = await _world(agent)
    ticket = await _ticket(customer, None, "shared")
    a, b = await _connected(agent), await _connected(other_agent)
    await b.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    await _drain(a)
    await _drain(b)
    return ticket, a, b


async def test_presence_repeating_the_state_is_not_broadcast_again(agent, other_agent):
    """Every presence frame was a Redis write and a message to each socket viewing the
    ticket; one repeating the state written a moment ago changes nothing, and is dropped."""
    ticket, a, b = await _presence_pair(agent, other_agent)
    for _ in range(5):
        await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    assert await _drain(b) == []
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "typing"})
    (changed,) = await _drain(b)
    assert {"id": agent.pk, "name": "agent", "state": "typing"} in changed["agents"]
    await a.disconnect()
    await b.disconnect()


async def test_presence_frames_have_a_budget_per_socket(agent, other_agent, monkeypatch):
    """A flood of changing states (500 frames were 500 broadcasts): past the socket's
    presence budget the frames are dropped (the page repeats its state every 15 s)."""
    monkeypatch.setattr(WorkbenchConsumer, "presence_burst", 3, raising=False)
    monkeypatch.setattr(WorkbenchConsumer, "presence_refill_per_second", 0.0, raising=False)
    ticket, a, b = await _presence_pair(agent, other_agent)  # A's viewing: 1 of its 3
    for i in range(10):
        state = ("typing", "viewing")[i % 2]
        await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": state})
    received = await _drain(b)
    assert [m["type"] for m in received] == ["presence", "presence"]
    await a.disconnect()
    await b.disconnect()


async def test_presence_budget_passes_an_agent_typing_in_bursts(agent, other_agent, monkeypatch):
    """The page's own pattern (workbench.js): "typing" at the first keystroke after a
    pause, "viewing" 3 s after the last. An agent typing a word, pausing 3 s, typing again
    sends two changes every 3.4 s, which a refill of one every 2 s could not keep up with:
    after ~25 words the other agent kept seeing a state that had changed. Every change
    now reaches the ticket's viewers (on a fake clock: the test takes no 3 minutes)."""
    import time
    import types

    clock = {"now": 1000.0}
    monkeypatch.setattr(
        "tickets.consumers.time",
        types.SimpleNamespace(monotonic=lambda: clock["now"], time=time.time),
    )
    monkeypatch.setattr("support.websockets.monotonic", lambda: clock["now"])
    ticket, a, b = await _presence_pair(agent, other_agent)
    shown = []
    for _ in range(45):
        for state, pause in (("typing", 0.4), ("viewing", 3.0)):
            await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": state})
            # A's own socket gets the broadcast too: the frame was handled (or dropped)
            if not await a.receive_nothing(timeout=1, interval=0.01):
                await a.receive_json_from()
                mine = [x for x in (await b.receive_json_from())["agents"] if x["id"] == agent.pk]
                shown.append(mine[0]["state"])
            else:
                shown.append("dropped")
            clock["now"] += pause
    assert shown == ["typing", "viewing"] * 45
    await a.disconnect()
    await b.disconnect()


async def test_a_frame_longer_than_any_workbench_message_is_refused_unparsed(agent):
    """The page sends heartbeats and presence (tens of characters): a longer frame is
    refused before it is parsed, and the socket carries on."""
    from unittest import mock

    communicator = await _connected(agent)
    frame = '{"type": "heartbeat", "pad": [' + ",".join(["[[]]"] * 400) + "]}"
    with mock.patch("support.websockets.json_loads") as parse:
        await communicator.send_input({"type": "websocket.receive", "text": frame})
        error = await communicator.receive_json_from()
    assert parse.call_count == 0
    assert error == {
        "type": "error",
        "code": "too_large",
        "message": "The frame is longer than 1024 characters.",
    }
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_presence_on_invisible_ticket_is_ignored(agent):
    customer, _, other = await _world(agent)
    hidden = await _ticket(customer, other, "hidden")
    communicator = _communicator(agent)
    await communicator.connect()
    await communicator.receive_json_from()
    presence = {"type": "presence", "ticket_id": hidden.pk, "state": "viewing"}
    await communicator.send_json_to(presence)
    assert await _drain(communicator) == []
    await communicator.disconnect()


async def test_presence_ends_when_the_ticket_moves_out_of_sight(agent, other_agent, supervisor):
    """A ticket the agent was viewing is moved to a team it is not in: its presence frames
    (who views and types there) stop at once, not at the next periodic access check."""
    customer, mine, other = await _world(agent)
    await database_sync_to_async(other.members.add)(other_agent)
    ticket = await _ticket(customer, mine, "moving")
    a, b = await _connected(agent), await _connected(other_agent)
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    await _drain(a)
    await database_sync_to_async(services.ticket_update)(
        ticket=ticket, actor=supervisor, team=other
    )
    after_move = await _drain(a)
    assert all(m["type"] != "event" for m in after_move)  # the move itself is not shown
    await b.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "typing"})
    seen_by_b = await _drain(b)
    assert seen_by_b[-1]["agents"] == [  # the agent that lost it left the ticket's presence
        {"id": other_agent.pk, "name": "other-agent", "state": "typing"}
    ]
    assert [m for m in await _drain(a) if m["type"] == "presence"] == []
    await a.disconnect()
    await b.disconnect()


async def test_events_url_is_filtered_too(agent):
    from channels.routing import URLRouter

    from support.websocket_urls import websocket_urlpatterns

    customer, _, other = await _world(agent)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/events/")
    communicator.scope["user"] = agent
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    await _ticket(customer, other, "not for this agent")
    assert await _drain(communicator) == []
    await communicator.disconnect()


# --- access re-checked while connected (issue #13, Low) ---------------------------------


@database_sync_to_async
def _leave_team(user, team, *, announce):
    from django.db import transaction

    with transaction.atomic():
        team.members.remove(user)
        if announce:
            from support.services import agent_access_changed

            agent_access_changed(user_ids=[user.pk], reason="test")


async def _connected(user):
    communicator = _communicator(user)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    return communicator


async def test_agent_removed_from_a_team_stops_receiving_its_events(agent):
    customer, mine, _ = await _world(agent)
    communicator = await _connected(agent)
    before = await _ticket(customer, mine, "while a member")
    assert {m["event"]["ticket_id"] for m in await _drain(communicator)} == {before.pk}
    await _leave_team(agent, mine, announce=True)
    await _ticket(customer, mine, "after leaving")
    assert await _drain(communicator) == []  # the access event itself is never forwarded
    await communicator.disconnect()


async def test_a_subscription_rechecks_membership(agent):
    customer, mine, _ = await _world(agent)
    ticket = await _ticket(customer, mine, "team ticket")
    communicator = await _connected(agent)
    await _drain(communicator)
    await _leave_team(agent, mine, announce=False)  # e.g. changed in a shell
    viewing = {"type": "presence", "ticket_id": ticket.pk, "state": "viewing"}
    await communicator.send_json_to(viewing)
    assert await _drain(communicator) == []  # no presence on a ticket it can't see now
    await _ticket(customer, mine, "later")
    assert await _drain(communicator) == []
    await communicator.disconnect()


async def test_access_is_rechecked_periodically_while_events_flow(agent, settings):
    settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS = 0
    customer, mine, _ = await _world(agent)
    communicator = await _connected(agent)
    await _leave_team(agent, mine, announce=False)
    await _ticket(customer, mine, "after leaving")
    assert await _drain(communicator) == []
    await communicator.disconnect()


async def test_a_deactivated_agent_is_disconnected(agent):
    from support.services import agent_access_changed

    await _world(agent)
    communicator = await _connected(agent)

    @database_sync_to_async
    def deactivate():
        type(agent).objects.filter(pk=agent.pk).update(is_active=False)
        agent_access_changed(user_ids=[agent.pk], reason="test")

    await deactivate()
    # the access event goes through Redis to the socket: a loaded machine took over 1 s
    closed = await communicator.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 4401}
    await communicator.wait(5)


@pytest.mark.django_db
def test_admin_membership_changes_announce_an_access_event(client, supervisor, agent):
    from django.urls import reverse

    from support.events import ACCESS_CHANGED_EVENT

    team = Team.objects.create(name="Billing", slug="billing")
    team.members.add(agent)
    client.force_login(supervisor)
    response = client.post(
        reverse("admin:tickets_team_change", args=[team.pk]),
        {"name": "Billing", "slug": "billing", "description": "", "members": []},
    )
    assert response.status_code == 302, response.content
    assert list(team.members.all()) == []
    events = OutboxEvent.objects.filter(event_type=ACCESS_CHANGED_EVENT)
    assert [e.payload["user_id"] for e in events] == [agent.pk]


async def test_a_since_that_is_not_an_ascii_id_replays_nothing(agent):
    """``?since=¹`` passed str.isdigit() and crashed the socket in int()."""
    communicator = _communicator(agent, since="%C2%B9")
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    await communicator.disconnect()


# --- visibility is the ticket's current one, not the event's (audit: replay leak) -------


@database_sync_to_async
def _created_then_routed_away(agent):
    """A ticket created with no team (as every channel intake does), then routed to a
    team the agent is not in: its ``ticket.created`` payload still says "no team"."""
    customer, _, other = _world.func(agent)
    ticket = services.ticket_create(customer=customer, subject="Lawsuit re J. Doe", body="x")
    services.ticket_update(ticket=ticket, actor=None, team=other)
    return ticket


@database_sync_to_async
def _envelopes(ticket):
    events = OutboxEvent.objects.filter(payload__ticket_id=ticket.pk).order_by("id")
    return [e.envelope() for e in events]


async def test_replay_hides_events_of_a_ticket_no_longer_visible(agent):
    ticket = await _created_then_routed_away(agent)
    assert {e["event_type"] for e in await _envelopes(ticket)} >= {"ticket.created"}
    communicator = _communicator(agent, since=0)  # /ws/events/ is the same consumer
    connected, _ = await communicator.connect()
    assert connected
    assert await _drain(communicator) == [{"type": "ready"}]
    await communicator.disconnect()


async def test_replay_shows_a_ticket_routed_to_the_agents_team(agent, other_agent):
    customer, mine, _ = await _world(agent)

    @database_sync_to_async
    def routed_to_mine():
        ticket = services.ticket_create(customer=customer, subject="for me", body="x")
        services.ticket_update(ticket=ticket, actor=None, team=mine)
        return ticket

    ticket = await routed_to_mine()
    communicator = _communicator(agent, since=0)
    await communicator.connect()
    replayed = await _drain(communicator)
    await communicator.disconnect()
    assert replayed[-1] == {"type": "ready"}
    events = [m["event"] for m in replayed[:-1]]
    assert events == await _envelopes(ticket)
    assert events
    assert all(m["replay"] is True for m in replayed[:-1])


def test_replay_checks_visibility_in_one_query(agent, django_assert_num_queries):
    from tickets.consumers import _replay, _user_info

    customer, _, other = _world.func(agent)
    for n in range(5):
        _ticket.func(customer, other, f"hidden {n}")
        _ticket.func(customer, None, f"shown {n}")
    _user_info(agent)  # roles and teams, loaded once on connect
    with django_assert_num_queries(2):  # the events, then their tickets' visibility
        events = _replay.func(0, agent).events
    assert {e["subject"] for e in events if e["event_type"] == "ticket.created"} == {
        f"shown {n}" for n in range(5)
    }


async def test_a_late_live_event_is_checked_against_the_current_ticket(agent):
    """An event sent again after a failed delivery (behind newer events) carries a team
    and assignee that may be out of date: the ticket's current ones decide."""
    from channels.layers import get_channel_layer

    from support.events import ALL_EVENTS_GROUP

    communicator = await _connected(agent)
    ticket = await _created_then_routed_away(agent)
    await _drain(communicator)  # the live ticket.created came before the routing
    created, *_ = await _envelopes(ticket)
    assert created["event_type"] == "ticket.created"
    assert created["team_id"] is None
    layer = get_channel_layer()
    await layer.group_send(ALL_EVENTS_GROUP, {"type": "event.message", "event": created})
    assert await _drain(communicator) == []
    await communicator.disconnect()


async def test_a_replay_longer_than_its_limit_says_so_and_where_to_carry_on(agent, monkeypatch):
    """Before: the first REPLAY_LIMIT missed events, then "ready" as if nothing more was
    missed: an open ticket page changed by a later event stayed stale."""
    monkeypatch.setattr("tickets.consumers.REPLAY_LIMIT", 3)
    customer, mine, _ = await _world(agent)
    for n in range(3):  # six events: two per ticket
        await _ticket(customer, mine, f"missed {n}")
    newest = await _last_event_id()
    communicator = _communicator(agent, since=0)
    await communicator.connect()
    received = await _drain(communicator)
    await communicator.disconnect()
    assert [m["type"] for m in received] == ["event"] * 3 + ["ready"]
    assert received[-1] == {"type": "ready", "truncated": True, "last_event_id": newest}
    # caught up from there: nothing more to replay, no truncation
    again = _communicator(agent, since=newest)
    await again.connect()
    assert await _drain(again) == [{"type": "ready"}]
    await again.disconnect()


@pytest.mark.parametrize("key", ["merged_into", "merged_from"])
async def test_a_merge_names_the_other_ticket_only_to_those_who_may_see_it(agent, supervisor, key):
    """A merge's ``ticket.updated`` events name the other ticket: the source's
    ``changes.merged_into`` (the target) and the target's ``changes.merged_from`` (the
    source). Each went to every agent who may see the ticket, live and in a replay, when
    the other ticket was one the agent may not see (where the ticket page and the API say
    "a ticket you cannot see")."""
    customer, _, other = await _world(agent)
    hidden_side = "target" if key == "merged_into" else "source"
    source = await _ticket(customer, other if hidden_side == "source" else None, "dup")
    target = await _ticket(customer, other if hidden_side == "target" else None, "orig")
    named = target.pk if key == "merged_into" else source.pk
    agent_socket = await _connected(agent)
    supervisor_socket = await _connected(supervisor)

    @database_sync_to_async
    def merge():
        services.ticket_merge(source=source, target=target, actor=supervisor)

    await merge()

    def merges(received):
        return [
            m["event"]["changes"][key]
            for m in received
            if m.get("type") == "event" and key in m["event"].get("changes", {})
        ]

    assert merges(await _drain(agent_socket)) == [[None, None]]
    assert merges(await _drain(supervisor_socket)) == [[None, named]]
    await agent_socket.disconnect()
    await supervisor_socket.disconnect()
    for user, expected in ((agent, [[None, None]]), (supervisor, [[None, named]])):
        replay = _communicator(user, since=0)
        await replay.connect()
        assert merges(await _drain(replay)) == expected
        await replay.disconnect()


# --- relay batches: one channel-layer message per batch, one frame per event ------------


@database_sync_to_async
def _batch_message(*tickets, extra=()):
    """The message the relay's websocket sink sends for these tickets' events (one batch,
    in id order), with ``extra`` envelopes after them."""
    from support.sinks import event_batch_message

    rows = OutboxEvent.objects.filter(payload__ticket_id__in=[t.pk for t in tickets])
    message = event_batch_message(list(rows.order_by("id")))
    message["events"].extend(extra)
    return message


async def _group_send(message):
    from channels.layers import get_channel_layer

    from support.events import ALL_EVENTS_GROUP

    await get_channel_layer().group_send(ALL_EVENTS_GROUP, message)


async def test_a_batch_is_one_frame_per_event_in_order_and_only_what_each_socket_may_see(
    agent, supervisor
):
    customer, mine, other = await _world(agent)
    tickets = [
        await _ticket(customer, team, subject)
        for subject, team in (("mine", mine), ("other", other), ("no team", None))
    ]
    batch = await _batch_message(*tickets)  # created before the sockets: not sent live
    assert len(batch["events"]) == 6
    agent_socket, supervisor_socket = await _connected(agent), await _connected(supervisor)

    await _group_send(batch)

    hidden = tickets[1].pk
    frames = [{"type": "event", "event": e} for e in batch["events"]]
    assert await _drain(agent_socket) == [f for f in frames if f["event"]["ticket_id"] != hidden]
    assert await _drain(supervisor_socket) == frames
    await agent_socket.disconnect()
    await supervisor_socket.disconnect()


async def test_a_batch_looks_up_its_unknown_tickets_once_for_every_socket(
    agent, other_agent, supervisor, monkeypatch
):
    """The tickets a batch's message events name (message events carry no team) are
    looked up in one query for the batch, shared by the process's sockets; before, one
    query per ticket."""
    from tickets import consumers

    customer, _, _ = await _world(agent)
    tickets = [await _ticket(customer, None, f"no team {n}") for n in range(3)]
    batch = await _batch_message(*tickets)
    batch["events"] = [e for e in batch["events"] if e["event_type"] == "message.created"]
    sockets = [await _connected(user) for user in (agent, other_agent, supervisor)]
    consumers._scope_cache.clear()
    looked_up = []
    query = consumers._ticket_scopes_query

    async def counted(ticket_ids):
        looked_up.append(sorted(ticket_ids))
        return await query(ticket_ids)

    monkeypatch.setattr(consumers, "_ticket_scopes_query", counted)

    await _group_send(batch)

    for socket in sockets:
        received = await _drain(socket)
        assert [m["event"] for m in received] == batch["events"]
        await socket.disconnect()
    assert looked_up == [sorted(t.pk for t in tickets)]


async def test_an_access_change_inside_a_batch_applies_to_the_events_after_it(agent, other_agent):
    """The user's own ``agent.access_changed`` in the middle of a batch: the events
    before it are judged as the socket knew the user, those after it as it is now
    (another user's changes nothing)."""
    from support.events import ACCESS_CHANGED_EVENT

    customer, mine, _ = await _world(agent)
    before = await _ticket(customer, mine, "before")
    after = await _ticket(customer, mine, "after")
    socket = await _connected(agent)
    await _leave_team(agent, mine, announce=False)  # the socket does not know yet
    first, second = await _batch_message(before), await _batch_message(after)

    def access_changed(user, after_event):
        return {"id": after_event["id"], "event_type": ACCESS_CHANGED_EVENT, "user_id": user.pk}

    created, message = first["events"]
    events = [created, access_changed(other_agent, created), message]
    events += [access_changed(agent, message), *second["events"]]
    await _group_send({"type": "event.batch", "events": events})

    assert [m["event"] for m in await _drain(socket)] == first["events"]
    await socket.disconnect()


async def test_a_batch_being_built_survives_the_socket_that_started_it(monkeypatch):
    """The first socket to get a batch starts building it for every socket of the process;
    if that socket goes away meanwhile (its handler cancelled), the others still get it."""
    from tickets import consumers

    for name in ("_scope_cache", "_scope_inflight", "_live_batches"):
        monkeypatch.setattr(consumers, name, {})
    monkeypatch.setattr(consumers, "_newest_event_id", 0)
    answer = asyncio.Event()

    async def slow_lookup(ticket_ids):
        await answer.wait()
        return {ticket_id: (None, None) for ticket_id in ticket_ids}

    monkeypatch.setattr(consumers, "_ticket_scopes_query", slow_lookup)
    events = [{"id": 7, "event_type": "message.created", "ticket_id": 3}]
    first = asyncio.ensure_future(consumers._live_batch(events))
    await asyncio.sleep(0.05)  # it started the build and waits for the lookup
    second = asyncio.ensure_future(consumers._live_batch(events))
    await asyncio.sleep(0.05)
    first.cancel()
    answer.set()

    batch = await asyncio.wait_for(second, 1)
    assert batch.scopes == [(None, None)]
    assert first.cancelled()


async def test_a_long_batch_lets_the_event_loop_serve_others_between_frames(supervisor):
    """A frame's send does not wait, so a socket sending a whole batch without a pause held
    the process's event loop (every other socket and request) until it was done."""
    from tickets.consumers import FRAMES_PER_TURN

    customer, _, _ = await _world(supervisor)
    tickets = [await _ticket(customer, None, f"t{n}") for n in range(FRAMES_PER_TURN)]
    batch = await _batch_message(*tickets)  # two events a ticket
    socket = await _connected(supervisor)
    seen: list[int] = []  # frames out when another task got to run

    async def other_work():
        while True:
            seen.append(socket.output_queue.qsize())
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_work())
    await _group_send(batch)
    await asyncio.sleep(0.5)  # nothing reads the frames meanwhile: the count only grows
    other.cancel()
    received = await _drain(socket)
    await socket.disconnect()
    assert len(received) == 2 * FRAMES_PER_TURN
    assert FRAMES_PER_TURN in seen  # it ran after the first frames, before the rest


# --- the current row decides, for live batches and presence (audit: backlog leak) -------


async def test_a_backlog_batch_is_checked_against_the_current_ticket(agent, supervisor):
    """After a relay outage the backlog arrives in order: a channel's ticket.created (no
    team) and its message.created (a preview of the customer's words) came to every agent
    although the ticket had since been routed to another team; and the cache they fed let
    the agent subscribe to its presence."""
    ticket = await _created_then_routed_away(agent)
    created, message, *_ = await _envelopes(ticket)
    assert (created["event_type"], created["team_id"]) == ("ticket.created", None)
    assert message["event_type"] == "message.created"
    agent_socket, supervisor_socket = await _connected(agent), await _connected(supervisor)

    await _group_send({"type": "event.batch", "events": [created, message]})

    assert await _drain(agent_socket) == []
    assert [m["event"] for m in await _drain(supervisor_socket)] == [created, message]
    await agent_socket.send_json_to(
        {"type": "presence", "ticket_id": ticket.pk, "state": "viewing"}
    )
    assert await _drain(agent_socket) == []
    await agent_socket.disconnect()
    await supervisor_socket.disconnect()


async def _viewing_then_moved_quietly(agent, other_agent, monkeypatch):
    """``agent`` and ``other_agent`` view a ticket of the agent's team, which is then moved
    to ``other_agent``'s team with no event reaching the sockets (a relay outage)."""
    from tickets import consumers
    from tickets.models import Ticket

    customer, mine, other = await _world(agent)
    await database_sync_to_async(other.members.add)(other_agent)
    ticket = await _ticket(customer, mine, "moving quietly")
    a, b = await _connected(agent), await _connected(other_agent)
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "viewing"})
    await _drain(a)
    await database_sync_to_async(Ticket.objects.filter(pk=ticket.pk).update)(team=other)
    monkeypatch.setattr(consumers, "_scope_cache", {})  # what the outage left unsaid
    return ticket, a, b


async def test_leaving_a_ticket_no_longer_visible_is_honoured(agent, other_agent, monkeypatch):
    """ "left" for a ticket the socket may no longer see was dropped before it left the
    ticket's presence: it stayed listed as viewing and kept receiving who views and
    types there."""
    ticket, a, b = await _viewing_then_moved_quietly(agent, other_agent, monkeypatch)
    await a.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "left"})
    await _drain(a)
    await b.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "typing"})
    seen_by_b = [m for m in await _drain(b) if m["type"] == "presence"]
    assert [m["agents"] for m in seen_by_b] == [
        [{"id": other_agent.pk, "name": "other-agent", "state": "typing"}]
    ]
    assert await _drain(a) == []
    await a.disconnect()
    await b.disconnect()


async def test_presence_is_not_pushed_for_a_ticket_no_longer_visible(
    agent, other_agent, monkeypatch
):
    """Who views and types on a ticket went to every socket that had subscribed to it,
    whether or not its user could still see the ticket."""
    ticket, a, b = await _viewing_then_moved_quietly(agent, other_agent, monkeypatch)
    await b.send_json_to({"type": "presence", "ticket_id": ticket.pk, "state": "typing"})
    assert await _drain(a) == []
    # and the socket left: the agent is no longer listed there
    seen_by_b = [m for m in await _drain(b) if m["type"] == "presence"]
    assert seen_by_b[-1]["agents"] == [
        {"id": other_agent.pk, "name": "other-agent", "state": "typing"}
    ]
    await a.disconnect()
    await b.disconnect()
