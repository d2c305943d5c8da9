"""``/ws/workbench/``: the workbench's live socket.

It streams outbox events (like ``/ws/events/``) filtered to the tickets the agent may
see, replays what was missed with ``?since=<event id>`` (no silent gap after a
reconnect), and carries presence for collision detection: clients send
``{"type": "presence", "ticket_id": 12, "state": "viewing"|"typing"|"left"}`` and every
socket viewing that ticket receives ``{"type": "presence", "ticket_id": 12, "agents": [...]}``.
Presence lives in Redis (one hash per ticket, entries expire) so it works across
processes.

"May see" is the ticket's CURRENT team and assignee (the ticket page's rule), never the
ones an event's payload recorded when it happened: a replayed (or late, re-sent) event of
a ticket since routed to another team is not sent. A merge's ``changes.merged_into`` and
``changes.merged_from`` name the other ticket only to those who may see it (null
otherwise), as the ticket page and the API's ``merged_into`` do.

What the agent may see is re-checked while the socket is open, so a change takes effect
without a reconnect: on an ``agent.access_changed`` event for this user (team membership,
roles or the active flag changed in the admin or by SSO), on each presence "viewing"
(the page subscribing to a ticket), and at least every
``WORKBENCH_WS_ACCESS_RECHECK_SECONDS`` while events flow (for changes made elsewhere).
A user who is no longer an active agent is disconnected (:data:`CLOSE_SIGNED_OUT`, 4401,
as an unauthenticated connect is refused).

The socket is also bound to the session that signed the user in (the cookie's, read at
the handshake by ``support.auth.sessions.SessionAuthMiddleware``): each re-check, and each
heartbeat once ``WORKBENCH_WS_ACCESS_RECHECK_SECONDS`` have passed (so a quiet socket ends
too), reads that session afresh and checks it as the handshake did
(``support.auth.sessions.session_signs_in``: it still exists and has not expired, names
this user and a configured backend, and its auth hash is the user's current one or a
``SECRET_KEY_FALLBACKS`` key's, compared in constant time). When it no longer signs the
user in but the user may still use the workbench, the socket closes with
:data:`CLOSE_SESSION_CHANGED` (4409): a sign-out, a password change or the session's
expiry end the browser's sign-in, but a session moved to a new key does not (the user's
own password change, a sign-in again, a request after a ``SECRET_KEY`` rotation), and only
the browser holds the new key. The page reconnects once, at once, with its cookie; that
handshake decides (refused with 4401: "Signed out"). Every sign-out records an
``agent.access_changed`` for the user, so its sockets re-check at once. A user that reached
the socket some other way (no signed-in session in the scope: a test, a future token
middleware) keeps the user checks alone.

Client frames are small (``{"type": "heartbeat"}``, presence), so a frame past 1,024
characters is refused before it is parsed; each frame counts against the socket's frame
budget (``support.websockets.JsonConsumer``). Presence frames have a budget of their own
(``presence_burst``, ``presence_refill_per_second``: over it they are dropped; the page
sends its state again every 15 s; its typing bursts stay under it), and a frame repeating
the state the socket last wrote for the ticket less than ``PRESENCE_REFRESH`` seconds ago
is not written or broadcast again: each one written is a Redis write and a message to
every socket viewing the ticket.

Events come from the relay one channel-layer message per batch (``event.batch``, the
batch's envelopes in id order; ``support.sinks.WebsocketSink``), and the socket sends one
``{"type": "event", ...}`` frame per event it may show, in that order. What does not
depend on the user is worked out once per batch in each process, for all its sockets
(:class:`LiveBatch`: each event's ticket scope as of the event and its ticket's current
row, read in one query for the batch, and each frame's JSON); each socket then only
applies its user's rule. An ``agent.access_changed`` for the user inside a batch applies
to the events after it.

Each open socket also counts its user as online (``tickets.online``: the supervisor
dashboard's "agents online"): marked on connect and on ``{"type": "heartbeat"}`` (the page
sends one a minute), cleared on disconnect, dropped when heartbeats stop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model

from support.auth.roles import is_agent, is_supervisor
from support.auth.sessions import session_signs_in
from support.events import ACCESS_CHANGED_EVENT, ALL_EVENTS_GROUP
from support.models import OutboxEvent
from support.parsing import parse_id
from support.redis_client import get_redis
from support.websockets import JsonConsumer
from tickets.models import Ticket
from tickets.online import agent_online_clear, agent_online_touch
from tickets.selectors import (
    ticket_visibility_check,
    ticket_visible_to,
    user_team_ids,
    visible_ticket_ids,
)

REPLAY_LIMIT = 1000
# Frames a socket sends in a row before it lets the event loop run something else: a send
# does not wait (it writes to the transport; it waits only when the client's connection is
# backed up), so a batch of hundreds of events on every socket of a process would hold the
# loop, and the requests it serves, for all that time.
FRAMES_PER_TURN = 16
PRESENCE_TTL = 30  # seconds an entry lives without a heartbeat
PRESENCE_STATES = ("viewing", "typing")
# A presence frame repeating the state this socket wrote for the ticket less than this
# long ago is not written or broadcast again (the page repeats its state every 15 s, to
# keep its entry alive within PRESENCE_TTL).
PRESENCE_REFRESH = 10.0
#: The longest frame the workbench reads: its frames are a heartbeat or a presence.
WORKBENCH_FRAME_MAX_CHARS = 1024
#: Close code: the user may not use the workbench (not signed in, inactive, no longer an
#: agent). The page says "Signed out" and does not reconnect.
CLOSE_SIGNED_OUT = 4401
#: Close code: the session the socket was opened with no longer signs its user in, who
#: may still use the workbench. The browser may hold a newer session (the old one moved to
#: a new key), so the page reconnects once at once; that handshake decides.
CLOSE_SESSION_CHANGED = 4409


def presence_group(ticket_id: int) -> str:
    return f"presence-{ticket_id}"


def _presence_key(ticket_id: int) -> str:
    return f"workbench:presence:{ticket_id}"


def _user_info(user: Any) -> dict[str, Any] | None:
    """None unless an active agent; loads (and caches on ``user``) roles and teams."""
    if not is_agent(user):
        return None
    user_team_ids(user)
    is_supervisor(user)
    return {"id": user.pk, "name": user.get_full_name() or user.get_username()}


@database_sync_to_async
def _load_user(user: Any, session: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The user's info (:func:`_user_info`), and the key of the session that signed it in:
    None when the scope has no session naming a user (it came another way)."""
    info = _user_info(user)
    if info is None or session is None or session.get(SESSION_KEY) is None:
        return info, None
    return info, session.session_key or ""


def _session_signs_in(session_key: str, user: Any) -> bool:
    """Whether the session ``session_key``, read afresh from the session store, still signs
    ``user`` in: the handshake's check (``support.auth.sessions.session_signs_in``), which
    writes nothing (``get_user`` flushes a failing session, and moves a fallback key's to a
    new key, which this socket's browser would not get)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return session_signs_in(store, user)


@database_sync_to_async
def _reload_user(user_id: int, session_key: str | None) -> tuple[Any, dict[str, Any]] | int:
    """A fresh copy of the user (no cached groups or teams) and its info; or the code to
    close the socket with: :data:`CLOSE_SIGNED_OUT` when the user is gone or no longer an
    active agent, else :data:`CLOSE_SESSION_CHANGED` when (``session_key`` given: the
    socket was opened with that session) the session no longer signs it in."""
    user = get_user_model().objects.filter(pk=user_id).first()
    info = _user_info(user) if user is not None else None
    if info is None:
        return CLOSE_SIGNED_OUT
    if session_key is not None and not _session_signs_in(session_key, user):
        return CLOSE_SESSION_CHANGED
    return user, info


def _event_ticket_id(event: dict[str, Any]) -> int | None:
    ticket_id = event.get("ticket_id")
    if ticket_id is None:
        return None
    return parse_id(str(ticket_id))


MERGE_REFERENCES = ("merged_into", "merged_from")  # the other ticket of a merge


def _merge_refs(event: dict[str, Any]) -> list[int]:
    """The other tickets a ``ticket.updated`` event's merge names: ``changes.merged_into``
    (on the ticket merged away) and ``changes.merged_from`` (on the ticket it went to)."""
    changes = event.get("changes")
    if not isinstance(changes, dict):
        return []
    refs = []
    for key in MERGE_REFERENCES:
        change = changes.get(key)
        if isinstance(change, list) and len(change) == 2 and change[1] is not None:
            ref = parse_id(str(change[1]))
            if ref is not None:
                refs.append(ref)
    return refs


def _merge_refs_shown(event: dict[str, Any], visible: set[int]) -> dict[str, Any]:
    """The event, each ticket its merge names left unnamed (null) unless in ``visible``."""
    changes = dict(event["changes"]) if isinstance(event.get("changes"), dict) else {}
    hidden = False
    for key in MERGE_REFERENCES:
        change = changes.get(key)
        if isinstance(change, list) and len(change) == 2 and change[1] is not None:
            ref = parse_id(str(change[1]))
            if ref is None or ref not in visible:
                changes[key] = [change[0], None]
                hidden = True
    return {**event, "changes": changes} if hidden else event


@database_sync_to_async
def _visible_ticket_ids(user: Any, ids: list[int]) -> set[int]:
    return visible_ticket_ids(user, ids)


@dataclass(frozen=True)
class Replay:
    events: list[dict[str, Any]]
    #: more than ``REPLAY_LIMIT`` events were missed: only the first were read, so the page
    #: reloads what it shows, and carries on from ``last_event_id`` (the newest delivered)
    truncated: bool = False
    last_event_id: int | None = None


@database_sync_to_async
def _replay(since: int, user: Any) -> Replay:
    """Delivered events after ``since`` that ``user`` may see NOW (the first
    ``REPLAY_LIMIT``; beyond them, ``truncated``).

    A replayed event's payload carries the ticket's team and assignee as they were when it
    happened (a ticket from a channel is created with no team, so its ``ticket.created``
    would stay visible to every agent after routing moves it to a team). Each event is
    therefore checked against its ticket's current team and assignee, the ticket page's
    rule, in one query for the batch; events with no ticket are for supervisors only.
    """
    delivered = OutboxEvent.objects.filter(delivered_at__isnull=False)
    rows = list(delivered.filter(id__gt=since).order_by("id")[: REPLAY_LIMIT + 1])
    truncated = len(rows) > REPLAY_LIMIT
    events = [
        event.envelope()
        for event in rows[:REPLAY_LIMIT]
        if event.event_type != ACCESS_CHANGED_EVENT
    ]
    pairs = [(event, _event_ticket_id(event)) for event in events]
    visible = visible_ticket_ids(user, [pk for _, pk in pairs if pk is not None])
    supervisor = is_supervisor(user)
    shown = [
        event
        for event, pk in pairs
        if (pk in visible if event.get("ticket_id") is not None else supervisor)
    ]
    refs = [ref for event in shown for ref in _merge_refs(event)]
    if refs:  # merges are rare: no query otherwise
        visible_refs = visible_ticket_ids(user, refs)
        shown = [_merge_refs_shown(event, visible_refs) for event in shown]
    if not truncated:
        return Replay(shown)
    newest = delivered.order_by("-id").values_list("id", flat=True).first()
    return Replay(shown, truncated=True, last_event_id=newest)


Scope = tuple[int | None, int | None]  # a ticket's (team_id, assignee_id)


@database_sync_to_async
def _ticket_scopes_query(ticket_ids: list[int]) -> dict[int, Scope]:
    rows = Ticket.objects.filter(pk__in=ticket_ids).values_list("pk", "team_id", "assignee_id")
    return {pk: (team_id, assignee_id) for pk, team_id, assignee_id in rows}


# Per-process cache of (team_id, assignee_id) by ticket, shared by every socket in this
# process: fed by ticket events (which carry both), by the rows each live batch reads, and
# by one coalesced query on a miss, so an event fanned out to 50 sockets costs at most one
# query here, not 50.
SCOPE_TTL = 30.0
_scope_cache: dict[int, tuple[float, Scope]] = {}
# Lookups running, by ticket: a task of their own, so a socket that goes away while it waits
# does not cancel the lookup for the others.
_scope_inflight: dict[int, asyncio.Future[dict[int, Scope]]] = {}


# The newest event id this process has handed to its sockets. The relay delivers in id
# order, so an event below it comes late (sent again after a failed delivery): the team and
# assignee in its payload may be out of date, so it must not feed the cache.
_newest_event_id = 0


def _scope_remember(event: dict[str, Any]) -> None:
    global _newest_event_id
    event_id = event.get("id")
    if isinstance(event_id, int):
        if event_id < _newest_event_id:
            return
        _newest_event_id = event_id
    ticket_id = event.get("ticket_id")
    if isinstance(ticket_id, int) and "team_id" in event and "assignee_id" in event:
        _scope_cache[ticket_id] = (time.monotonic(), (event["team_id"], event["assignee_id"]))
        if len(_scope_cache) > 10_000:
            _scope_cache.clear()


async def _ticket_scopes_fetch(ticket_ids: list[int]) -> dict[int, Scope]:
    found = await _ticket_scopes_query(ticket_ids)
    stamp = time.monotonic()
    for ticket_id, scope in found.items():
        _scope_cache[ticket_id] = (stamp, scope)
    return found


async def _ticket_scopes(ticket_ids: Iterable[int]) -> dict[int, Scope | None]:
    """Each ticket's current scope (None: no such ticket): from the cache while fresh, the
    rest in ONE query, which sockets asking for the same tickets meanwhile wait for
    instead of querying again."""
    scopes: dict[int, Scope | None] = {}
    waits: dict[int, asyncio.Future[dict[int, Scope]]] = {}
    missing: list[int] = []
    now = time.monotonic()
    for ticket_id in set(ticket_ids):
        cached = _scope_cache.get(ticket_id)
        if cached is not None and now - cached[0] < SCOPE_TTL:
            scopes[ticket_id] = cached[1]
        elif ticket_id in _scope_inflight:
            waits[ticket_id] = _scope_inflight[ticket_id]
        else:
            missing.append(ticket_id)
    if missing:
        lookup = asyncio.ensure_future(_ticket_scopes_fetch(missing))

        def done(_: object, ids: list[int] = missing) -> None:
            for ticket_id in ids:
                if _scope_inflight.get(ticket_id) is lookup:
                    del _scope_inflight[ticket_id]

        lookup.add_done_callback(done)
        for ticket_id in missing:
            _scope_inflight[ticket_id] = waits[ticket_id] = lookup
    for ticket_id, lookup_ in waits.items():
        scopes[ticket_id] = (await asyncio.shield(lookup_)).get(ticket_id)
    return scopes


async def _ticket_scope(ticket_id: int) -> Scope | None:
    return (await _ticket_scopes([ticket_id]))[ticket_id]


@dataclass(frozen=True)
class LiveBatch:
    """A batch of live events as every socket of this process reads it: built once per
    batch (:func:`_live_batch`), then each socket only applies its user's rule to
    ``scopes`` and ``current`` and sends ``frames``."""

    events: list[dict[str, Any]]
    #: the scope of each event's ticket as of that event: the cache, fed in order by the
    #: batch's own ticket events, else the ticket's current row (None: no ticket, or no
    #: such ticket)
    scopes: list[Scope | None]
    #: each event's ``{"type": "event", ...}`` frame text, encoded once for every socket
    frames: list[str]
    #: the other tickets each event's merge names (:func:`_merge_refs`; mostly none)
    merge_refs: list[list[int]]
    #: the scope of each event's ticket NOW, its row read once for the batch (None: no
    #: ticket, or no such ticket). An event is shown only if its ticket is visible under
    #: both: a backlog delivered in order after a relay outage carries each ticket's old
    #: team (a channel's ticket.created says "no team"), which the row has since left.
    current: list[Scope | None]


async def _live_batch_build(events: list[dict[str, Any]]) -> LiveBatch:
    ticket_ids = [_event_ticket_id(event) for event in events]
    # The rows of the batch's tickets as they are now, in one query for the batch (and for
    # every socket of the process): committed before the relay sent the batch, so no event
    # of it is newer than they are.
    wanted = sorted({ticket_id for ticket_id in ticket_ids if ticket_id is not None})
    rows = await _ticket_scopes_query(wanted) if wanted else {}
    scopes: list[Scope | None] = []
    current: list[Scope | None] = []
    for event, ticket_id in zip(events, ticket_ids, strict=True):
        _scope_remember(event)  # a late event's payload does not feed the cache
        if ticket_id is None:
            scopes.append(None)
            current.append(None)
            continue
        row = rows.get(ticket_id)
        cached = _scope_cache.get(ticket_id)
        if cached is not None and time.monotonic() - cached[0] < SCOPE_TTL:
            scopes.append(cached[1])
        else:
            scopes.append(row)
        current.append(row)
    # What the batch's payloads left in the cache may be older than the rows (a backlog):
    # the presence checks read the cache, so it keeps the rows.
    stamp = time.monotonic()
    for ticket_id in wanted:
        if ticket_id in rows:
            _scope_cache[ticket_id] = (stamp, rows[ticket_id])
        else:
            _scope_cache.pop(ticket_id, None)
    frames = [json.dumps({"type": "event", "event": event}) for event in events]
    merge_refs = [_merge_refs(event) for event in events]
    return LiveBatch(events, scopes, frames, merge_refs, current)


# The batches being (or just) built, by their event ids: every socket of the process gets
# the same batch, and the first to handle it starts building it for all (in a task of its
# own: a socket that goes away meanwhile does not cancel it for the others). Kept a few
# seconds (a socket behind the others still finds it), at most LIVE_BATCHES_KEPT.
LIVE_BATCH_TTL = 5.0
LIVE_BATCHES_KEPT = 64
_live_batches: dict[tuple[Any, ...], tuple[float, asyncio.Future[LiveBatch]]] = {}


async def _live_batch(events: list[dict[str, Any]]) -> LiveBatch:
    key = tuple(event.get("id") for event in events)
    now = time.monotonic()
    entry = _live_batches.get(key)
    if entry is None or now - entry[0] >= LIVE_BATCH_TTL or entry[1].cancelled():
        for old, (at, _) in list(_live_batches.items()):
            if now - at >= LIVE_BATCH_TTL or len(_live_batches) >= LIVE_BATCHES_KEPT:
                del _live_batches[old]
        build = asyncio.ensure_future(_live_batch_build(events))

        def failed(task: asyncio.Future[LiveBatch]) -> None:  # built again next time
            broken = task.cancelled() or task.exception() is not None
            if broken and _live_batches.get(key, (0.0, None))[1] is task:
                del _live_batches[key]

        build.add_done_callback(failed)
        entry = _live_batches[key] = (now, build)
    return await asyncio.shield(entry[1])


def _presence_write(ticket_id: int, user: dict[str, Any], state: str) -> list[dict[str, Any]]:
    redis = get_redis()
    key = _presence_key(ticket_id)
    if state in PRESENCE_STATES:
        entry = {**user, "state": state, "at": time.time()}
        redis.hset(key, str(user["id"]), json.dumps(entry))
        redis.expire(key, PRESENCE_TTL * 2)
    else:
        redis.hdel(key, str(user["id"]))
    now = time.time()
    agents = []
    for raw in redis.hvals(key):
        entry = json.loads(raw)
        if now - entry["at"] <= PRESENCE_TTL:
            agents.append({k: entry[k] for k in ("id", "name", "state")})
    return sorted(agents, key=lambda a: a["id"])


_presence_write_async = database_sync_to_async(_presence_write)


@database_sync_to_async
def _online_touch(user_id: int, connection: str) -> None:
    agent_online_touch(user_id=user_id, connection=connection)


@database_sync_to_async
def _online_clear(user_id: int, connection: str) -> None:
    agent_online_clear(user_id=user_id, connection=connection)


class WorkbenchConsumer(JsonConsumer):
    max_frame_chars = WORKBENCH_FRAME_MAX_CHARS
    #: presence frames a socket may have written at once, and written again a second. The
    #: page sends at most two state changes every 3 s while its agent types in bursts
    #: ("typing" at the first keystroke, "viewing" 3 s after the last: workbench.js), and
    #: repeats its state every 15 s; at 0.5 a second, 12 of 120 such changes were dropped
    #: (another agent kept seeing "typing").
    presence_burst = 10
    presence_refill_per_second = 1.0
    user_info: dict[str, Any] | None = None
    #: the key of the session the user signed in with (None: not signed in by a session)
    session_key: str | None = None
    watching: set[int]
    access_checked_at: float = 0.0

    async def connect(self) -> None:
        self.watching = set()
        self.presence_written: dict[int, tuple[str, float]] = {}
        self.presence_tokens = float(self.presence_burst)
        self.presence_at = time.monotonic()
        user = self.scope.get("user")
        info, session_key = (
            await _load_user(user, self.scope.get("session")) if user is not None else (None, None)
        )
        if info is None or session_key == "":  # "": a signed-in session with no key
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        self.user = user
        self.user_info = info
        self.session_key = session_key
        self.access_checked_at = time.monotonic()
        await self.channel_layer.group_add(ALL_EVENTS_GROUP, self.channel_name)
        await self.accept()
        await _online_touch(info["id"], self.channel_name)
        query = parse_qs(self.scope.get("query_string", b"").decode())
        since = query.get("since", [""])[0]
        since_id = parse_id(since)
        ready: dict[str, Any] = {"type": "ready"}
        if since_id is not None:
            replay = await _replay(since_id, self.user)
            for event in replay.events:
                await self.send_json({"type": "event", "replay": True, "event": event})
            if replay.truncated:  # too much was missed to replay: the page reloads instead
                ready.update(truncated=True, last_event_id=replay.last_event_id)
        await self.send_json(ready)

    async def disconnect(self, code: int) -> None:
        if self.user_info is None:
            return
        await self.channel_layer.group_discard(ALL_EVENTS_GROUP, self.channel_name)
        await _online_clear(self.user_info["id"], self.channel_name)
        for ticket_id in list(self.watching):
            await self._presence(ticket_id, "left")

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.user_info is None:  # closed (access lost)
            return
        if isinstance(content, dict) and content.get("type") == "heartbeat":
            # a quiet socket (no events, no presence) is re-checked here too
            if self._access_stale() and not await self._recheck_access():
                return
            await _online_touch(self.user_info["id"], self.channel_name)
            return
        if not isinstance(content, dict) or content.get("type") != "presence":
            return
        ticket_id = content.get("ticket_id")
        state = content.get("state")
        if not isinstance(ticket_id, int) or state not in (*PRESENCE_STATES, "left"):
            return
        written = self.presence_written.get(ticket_id)
        if (
            written is not None
            and written[0] == state
            and time.monotonic() - written[1] < PRESENCE_REFRESH
        ):
            return  # the same state again, written a moment ago: nothing changes
        if not self._presence_spend():
            return  # over the presence budget: dropped (the page repeats its state)
        if state == "left" and ticket_id in self.watching:
            # always honoured, visible or not: the socket stops receiving the ticket's
            # viewers and typists (checked first, it kept them)
            await self._presence(ticket_id, "left")
            return
        if state == "viewing" and not await self._recheck_access():
            return
        if not await self._may_see(ticket_id):
            return
        await self._presence(ticket_id, state)

    def _presence_spend(self) -> bool:
        """Take one presence frame from the socket's budget (a token bucket); False over it."""
        now = time.monotonic()
        self.presence_tokens = min(
            float(self.presence_burst),
            self.presence_tokens + (now - self.presence_at) * self.presence_refill_per_second,
        )
        self.presence_at = now
        if self.presence_tokens < 1:
            return False
        self.presence_tokens -= 1
        return True

    def _access_stale(self) -> bool:
        recheck_after = float(settings.WORKBENCH_WS_ACCESS_RECHECK_SECONDS)
        return time.monotonic() - self.access_checked_at >= recheck_after

    async def _may_see(self, ticket_id: int) -> bool:
        scope = await _ticket_scope(ticket_id)
        return scope is not None and ticket_visible_to(
            self.user, team_id=scope[0], assignee_id=scope[1]
        )

    async def _presence(self, ticket_id: int, state: str) -> None:
        assert self.user_info is not None
        if state == "left":
            self.watching.discard(ticket_id)
            self.presence_written.pop(ticket_id, None)
            await self.channel_layer.group_discard(presence_group(ticket_id), self.channel_name)
        else:
            self.presence_written[ticket_id] = (state, time.monotonic())
            if ticket_id not in self.watching:
                self.watching.add(ticket_id)
                await self.channel_layer.group_add(presence_group(ticket_id), self.channel_name)
        agents = await _presence_write_async(ticket_id, self.user_info, state)
        await self.channel_layer.group_send(
            presence_group(ticket_id),
            {"type": "presence.message", "ticket_id": ticket_id, "agents": agents},
        )

    async def _recheck_access(self) -> bool:
        """Load the user's roles and teams again, and check its session (if it signed in
        with one) still signs it in; False (and the socket closed: :func:`_reload_user`'s
        code) when it may no longer use the workbench or the session changed. Presence on
        tickets it can no longer see ends."""
        if self.user_info is None:
            return False
        reloaded = await _reload_user(self.user_info["id"], self.session_key)
        self.access_checked_at = time.monotonic()
        if isinstance(reloaded, int):
            for ticket_id in list(self.watching):
                await self._presence(ticket_id, "left")
            await _online_clear(self.user_info["id"], self.channel_name)
            self.user_info = None
            await self.channel_layer.group_discard(ALL_EVENTS_GROUP, self.channel_name)
            await self.close(code=reloaded)
            return False
        self.user, self.user_info = reloaded
        for ticket_id in list(self.watching):
            if not await self._may_see(ticket_id):
                await self._presence(ticket_id, "left")
        return True

    async def event_batch(self, message: dict[str, Any]) -> None:
        """A relay batch (``support.sinks.WebsocketSink``): one frame per event the user
        may see, in id order."""
        await self._live_events(message["events"])

    async def event_message(self, message: dict[str, Any]) -> None:
        """One event (what relays sent before batches: a rolling deploy)."""
        await self._live_events([message["event"]])

    async def _live_events(self, events: list[dict[str, Any]]) -> None:
        if self.user_info is None:
            return
        batch = await _live_batch(events)
        start = 0
        for index, event in enumerate(events):
            if event.get("event_type") != ACCESS_CHANGED_EVENT:  # never forwarded
                continue
            # this user's access changed: the events before it are sent as it was, the
            # events after it as it is now
            if not await self._forward(batch, start, index):
                return
            if event.get("user_id") == self.user_info["id"] and not await self._recheck_access():
                return
            start = index + 1
        await self._forward(batch, start, len(events))

    async def _forward(self, batch: LiveBatch, start: int, end: int) -> bool:
        """Send ``batch``'s events ``start:end`` the user may see; False when the socket
        closed (access re-checked and lost)."""
        if start >= end:
            return True
        if self._access_stale() and not await self._recheck_access():
            return False
        # Whether an event's ticket is visible to the user now: by its scope as of the
        # event and by the ticket's current row (LiveBatch), never by an event's payload
        # alone. Events with no ticket are for supervisors only.
        supervisor = is_supervisor(self.user)
        may_see = ticket_visibility_check(self.user)  # roles and teams read once
        sent = 0
        lost: set[int] = set()  # watched tickets the user may no longer see
        for index in range(start, end):
            event = batch.events[index]
            scope, current = batch.scopes[index], batch.current[index]
            ticket_id = event.get("ticket_id")
            if ticket_id is None:
                if not supervisor:
                    continue
            elif not supervisor and (
                scope is None or current is None or not may_see(*scope) or not may_see(*current)
            ):
                if ticket_id in self.watching:
                    lost.add(ticket_id)
                continue
            refs = batch.merge_refs[index]
            if refs:  # merges are rare: the frame is this user's own
                visible = await _visible_ticket_ids(self.user, refs)
                await self.send_json({"type": "event", "event": _merge_refs_shown(event, visible)})
            else:
                await self.send(text_data=batch.frames[index])
            sent += 1
            if sent % FRAMES_PER_TURN == 0:
                await asyncio.sleep(0)
        # A ticket moved out of the user's sight (another team, another assignee): its
        # presence (who views and types there) ends now, not at the next access check.
        for ticket_id in lost:
            await self._presence(ticket_id, "left")
        return True

    async def presence_message(self, message: dict[str, Any]) -> None:
        """Who views and types on a watched ticket, if the user may still see it (the
        ticket's scope as :func:`_ticket_scope` knows it, kept to the rows by each live
        batch); otherwise the socket leaves the ticket's presence instead."""
        ticket_id = message["ticket_id"]
        if self.user_info is None or ticket_id not in self.watching:
            return
        if not await self._may_see(ticket_id):
            await self._presence(ticket_id, "left")
            return
        await self.send_json(
            {"type": "presence", "ticket_id": message["ticket_id"], "agents": message["agents"]}
        )
