"""Workbench websockets for a bench (bench/webhook_intake.py ``--sockets N``): N signed-in
``/ws/workbench/`` sockets, one supervisor and agents in two teams, that note when each
``message.created`` frame arrives (what an agent's browser would show).

The sockets run in a process of their own (spawned: no Django there, only ``websockets``),
so reading thousands of frames a second does not slow the load generator's event loop;
its CPU is reported apart ("sockets client"). Frames are kept raw while they arrive and
parsed once the expected messages are known. The client negotiates permessage-deflate,
as browsers do, so the server compresses every frame as it would in production.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

SUPERVISOR = "supervisor"
TEAM_A = "agent team a"  # may not see the tickets moved to team b
TEAM_B = "agent team b"  # sees every bench ticket (no team, or team b)
KINDS = (SUPERVISOR, TEAM_A, TEAM_B)


@dataclass(frozen=True)
class SocketUser:
    kind: str
    user_id: int
    team_id: int | None
    cookie: str


def teams() -> tuple[Any, Any]:
    """The bench's two teams (created once)."""
    from tickets.models import Team

    team_a, _ = Team.objects.get_or_create(slug="bench-a", defaults={"name": "Bench A"})
    team_b, _ = Team.objects.get_or_create(slug="bench-b", defaults={"name": "Bench B"})
    return team_a, team_b


def socket_users(count: int) -> list[SocketUser]:
    """``count`` signed-in users (a fresh session each): the first a supervisor, then
    agents alternately in team a and team b."""
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.cached_db import SessionStore

    from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP

    team_a, team_b = teams()
    users = []
    for n in range(count):
        kind = SUPERVISOR if n == 0 else (TEAM_A if n % 2 else TEAM_B)
        user, _ = get_user_model().objects.get_or_create(username=f"bench-ws-{n}")
        group = SUPERVISORS_GROUP if kind == SUPERVISOR else AGENTS_GROUP
        user.groups.set([Group.objects.get_or_create(name=group)[0]])
        team = None if kind == SUPERVISOR else (team_a if kind == TEAM_A else team_b)
        for each in (team_a, team_b):  # only its own team (the user may be a leftover)
            if each == team:
                each.members.add(user)
            else:
                each.members.remove(user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.save()
        users.append(
            SocketUser(kind, user.pk, team.pk if team else None, f"sessionid={session.session_key}")
        )
    return users


def may_see(user: SocketUser, team_id: int | None) -> bool:
    """The workbench's rule for the bench's tickets (none is assigned): supervisors see
    all, agents the tickets with no team and their team's."""
    return user.kind == SUPERVISOR or team_id is None or team_id == user.team_id


class SocketClients:
    """The sockets' process: connected (each past its ``ready`` frame) on construction."""

    def __init__(self, port: int, users: list[SocketUser], *, timeout: float = 60) -> None:
        self.users = users
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_client_main, args=(child, port, [u.cookie for u in users]), daemon=True
        )
        self.process.start()
        if not self.conn.poll(timeout):
            self.close()
            raise RuntimeError("the bench's websockets did not connect")
        state, detail = self.conn.recv()
        if state != "ready":
            self.close()
            raise RuntimeError(f"the bench's websockets failed: {detail}")

    def cpu_seconds(self) -> float:
        """CPU (user + system) of the sockets' process so far."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return float("nan")
        ticks = sum(int(v) for v in fields.split()[11:13])
        return ticks / os.sysconf("SC_CLK_TCK")

    def collect(
        self, expected: list[set[int]], timeout: float, quiet: float = 10
    ) -> list[tuple[dict[int, float], int]]:
        """Per socket: the first arrival (epoch seconds) of each ``message.created`` by
        message id, and how many such frames came in all; waits until every socket has
        what ``expected`` says it should, or no frame came for ``quiet`` seconds (the rest
        is not coming: dropped on the way), or ``timeout``; then closes the sockets."""
        self.conn.send(("expect", [sorted(e) for e in expected], timeout, quiet))
        if not self.conn.poll(timeout + 30):
            raise RuntimeError("the bench's websockets did not answer")
        state, result = self.conn.recv()
        if state != "result":
            raise RuntimeError(f"the bench's websockets failed: {result}")
        return [({int(k): v for k, v in got.items()}, frames) for got, frames in result]

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


def _client_main(conn: Connection, port: int, cookies: list[str]) -> None:
    try:
        asyncio.run(_client(conn, port, cookies))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


async def _client(conn: Connection, port: int, cookies: list[str]) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    frames: list[list[tuple[float, str]]] = [[] for _ in cookies]
    ready = [asyncio.Event() for _ in cookies]

    async def reader(index: int, cookie: str) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/ws/workbench/",
            origin=Origin(f"http://127.0.0.1:{port}"),
            additional_headers={"Cookie": cookie},
            max_size=2**22,
            max_queue=None,  # never push back on the server: a browser reads everything
        ) as ws:
            async for raw in ws:
                at = time.time()
                if ready[index].is_set():
                    frames[index].append((at, str(raw)))
                elif json.loads(raw).get("type") == "ready":
                    ready[index].set()

    tasks = [asyncio.create_task(reader(i, c)) for i, c in enumerate(cookies)]
    waiting: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in ready)))
    done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:  # a socket ended (refused, closed) before everyone was ready
        for task in done:
            task.result()
        raise RuntimeError("a websocket closed before its ready frame")
    conn.send(("ready", None))
    loop = asyncio.get_running_loop()
    _, expected_lists, timeout, quiet = await loop.run_in_executor(None, conn.recv)
    expected = [set(e) for e in expected_lists]
    received: list[dict[int, float]] = [{} for _ in cookies]
    counts = [0] * len(cookies)
    parsed = [0] * len(cookies)
    deadline = time.monotonic() + timeout
    while True:
        for index, got in enumerate(received):
            new = frames[index][parsed[index] :]
            parsed[index] += len(new)
            for at, raw in new:
                event = json.loads(raw).get("event") or {}
                if event.get("event_type") == "message.created":
                    counts[index] += 1
                    got.setdefault(int(event["message_id"]), at)
        complete = all(e <= got.keys() for e, got in zip(expected, received, strict=True))
        last = max((f[-1][0] for f in frames if f), default=0.0)
        if complete or time.monotonic() >= deadline or 0 < last <= time.time() - quiet:
            break
        await asyncio.sleep(0.25)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("result", list(zip(received, counts, strict=True))))
