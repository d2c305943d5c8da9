#!/usr/bin/env python
"""Soak: mixed load against a whole running stack for a bounded time, then the books.

Starts its own stack, as `make run` does (uvicorn web workers, the realtime and the
enrichment Celery workers, beat; `scripts/run.py`'s commands) on PostgreSQL and Redis of
its own (data in ``--data-dir``, default ``.devdata/soak``; Redis on a free port; the
database is recreated each run), plus a fake provider (``bench/_fake_provider.py``) that
stands in for the WhatsApp / Meta / X / SendGrid APIs and the external ticketing system.
It never touches a developer's `make run` data.

Then, for ``--minutes`` (default 10), it offers a paced mix of: signed webhooks on every
channel (WhatsApp, Messenger, Instagram, X, SendGrid e-mail, web chat, chatbot hand-off;
5% redelivered byte for byte), API ticket creates, agents' public replies (sent by the
product to the fake provider), ticket lists and reads, routing reads, knowledge-base
searches and call events (contact trace records with a transcript to analyse, contact
events, agent events). While it runs it samples the RSS of every process every few
seconds.

At the end it waits for the backlog to drain and prints: throughput; p50/p99 latency,
5xx and other non-2xx per kind; memory growth of each process after warm-up (the first
20% of the run); and the books, from the database and the fake provider's own counts:
every accepted webhook became exactly one message (chatbot: one ticket per session),
every API create one ticket, every call record a processed event, every reply was
delivered exactly once. Exit status 1 when a target is missed: a product process grew
more than 10% after warm-up, anything lost or duplicated, any 5xx or broken connection.

    .venv/bin/python bench/soak.py                 # 10 minutes
    .venv/bin/python bench/soak.py --smoke         # 1 minute, a quick check
    .venv/bin/python bench/soak.py --minutes 30 --scale 2

Not part of `make test` (bounded-time fault tests live in tests/faults/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

ROOT = _harness.ROOT
PY = sys.executable
PROVIDER_CHANNELS = ("whatsapp", "messenger", "instagram", "twitter", "email")
# Credentials of the soak's own accounts in its own database (S105/S106: not secrets).
SECRET = "soak-app-secret"  # noqa: S105
GROWTH_LIMIT = 0.10


# --- what the soak offers, per second at --scale 1 ---------------------------------------

RATES: dict[str, float] = {
    "wh_whatsapp": 2.0,
    "wh_messenger": 1.0,
    "wh_instagram": 0.7,
    "wh_twitter": 0.7,
    "wh_email": 0.4,
    "wh_webchat": 0.7,
    "wh_chatbot": 0.3,
    "api_create": 1.0,
    "reply": 1.2,
    "ticket_list": 0.3,
    "ticket_get": 0.7,
    "routing": 0.5,
    "kb_search": 0.7,
    "call_ctr": 0.3,
    "call_contact": 0.3,
    "call_agent": 0.3,
}


@dataclass
class Books:
    """What the soak expects to find at the end (only what the server accepted)."""

    inbound: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    resent_accepted: int = 0  # a byte-identical redelivery answered "accepted" again
    chatbot_sessions: set[str] = field(default_factory=set)
    api_subjects: set[str] = field(default_factory=set)
    replies: dict[str, str] = field(default_factory=dict)  # marker -> channel
    call_events: set[str] = field(default_factory=set)  # CallEvent external ids
    call_contacts: set[str] = field(default_factory=set)  # CTR contact ids


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, kind: str, status: int, seconds: float) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[kind][status] += 1


class Conn:
    """A keep-alive connection (bench/_harness.KeepAliveClient) that reconnects before
    the server's idle timeout (uvicorn: 5 s) rather than racing it, and after an error."""

    IDLE = 3.0
    # A new connection every so many requests, so each kind's requests spread over the web
    # workers as many clients' would (the kernel hands a connection to one worker); every
    # other request during warm-up, so that each worker loads what it loads lazily (the
    # embedding model: ~190 MB on its first search) before memory is judged.
    REQUESTS = 25
    warming = True

    def __init__(self, host: str, port: int, stats: Stats) -> None:
        self.host, self.port, self.stats = host, port, stats
        self.client = _harness.KeepAliveClient(host, port)
        self.last = time.monotonic()
        self.used = 0

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        every = 2 if Conn.warming else self.REQUESTS
        if time.monotonic() - self.last > self.IDLE or self.used >= every:
            await self.client.close()
            self.client = _harness.KeepAliveClient(self.host, self.port)
            self.used = 0
        self.used += 1
        started = time.perf_counter()
        try:
            status, payload = await asyncio.wait_for(
                self.client.request(method, path, body, headers), timeout=60
            )
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            status, payload = 0, b""
            await self.client.close()
            self.client = _harness.KeepAliveClient(self.host, self.port)
        self.stats.record(kind, status, time.perf_counter() - started)
        self.last = time.monotonic()
        return status, payload

    async def close(self) -> None:
        await self.client.close()


# --- the stack ---------------------------------------------------------------------------


def stack_start(args: argparse.Namespace, data: Path) -> dict[str, str]:
    """PostgreSQL and Redis of the soak's own (scripts/services.py with DATA_DIR and the
    Redis port set), a fresh database, then the `make run` setup steps."""
    os.environ["DATA_DIR"] = str(data)
    os.environ["SUPPORT_REDIS_PORT"] = str(args.redis_port or _harness.free_port())
    import psycopg
    import redis
    import services

    env = dict(os.environ)
    env.update(services.start("run"))
    url = env["DATABASE_URL"]
    admin_url = url.replace("/support?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "soak" WITH (FORCE)')
        conn.execute('CREATE DATABASE "soak"')
    env["DATABASE_URL"] = url.replace("/support?", "/soak?")
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    redis.Redis.from_url(env["REDIS_URL"]).flushall()
    return env


def stack_stop(data: Path) -> None:
    import services

    services.stop_postgres("run")
    services.stop_redis("run")


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


@dataclass
class Setup:
    base: str
    paths: dict[str, str]  # channel -> webhook path
    webchat_token: str
    agent_key: str
    integration_key: str
    first_ticket_id: int
    kb_queries: list[str]


def accounts_and_keys(base: str) -> Setup:
    """The soak's channel accounts, a supervisor's API key (sees every ticket, whatever
    routing does) and an integration key for call events."""
    from django.contrib.auth import get_user_model
    from django.db.models import Max
    from django.utils import timezone

    from channels_app.models import ChannelAccount
    from channels_app.services import channel_account_upsert
    from support.models import ApiKeyRole
    from support.services import api_key_create
    from tickets.models import Ticket

    made = {
        "whatsapp": channel_account_upsert(
            channel="whatsapp",
            name="soak",
            external_id="bench",
            app_secret=SECRET,
            access_token="wa-token",  # noqa: S106
        ),
        "messenger": channel_account_upsert(
            channel="messenger",
            name="soak",
            external_id="107240291734629",
            app_secret=SECRET,
            access_token="page-token",  # noqa: S106
        ),
        "instagram": channel_account_upsert(
            channel="instagram",
            name="soak",
            external_id="17841405822304914",
            app_secret=SECRET,
            access_token="ig-token",  # noqa: S106
        ),
        "twitter": channel_account_upsert(
            channel="twitter",
            name="soak",
            external_id="3001969357",
            consumer_secret=SECRET,
            access_token="xat-initial",  # noqa: S106
            refresh_token="xrt-initial",  # noqa: S106
            client_secret="x-client-secret",  # noqa: S106
        ),
        "email": channel_account_upsert(
            channel="email",
            name="soak",
            external_id="support@inbound.acme.test",
            inbound_token="soak-inbound",  # noqa: S106
            access_token="sg-key",  # noqa: S106
        ),
        "webchat": channel_account_upsert(channel="webchat", name="soak", external_id="soak"),
        "chatbot": channel_account_upsert(channel="chatbot", name="soak", app_secret=SECRET),
    }
    ChannelAccount.objects.filter(pk=made["twitter"].pk).update(
        client_id="x-client",
        access_token_expires_at=timezone.now() + timedelta(seconds=ARGS.x_token_ttl),
    )
    agent_key = _harness.bench_api_key("soak-supervisor", group="Supervisors")
    user, _ = get_user_model().objects.get_or_create(username="soak-connect")
    _, integration_key = api_key_create(
        name="soak-connect",
        user=user,
        role=ApiKeyRole.INTEGRATION,
        rate_limit_per_minute=10_000_000,
    )
    titles = [
        json.loads(line).get("title", "")
        for line in (ROOT / "knowledge/demo_data/articles.jsonl").read_text().splitlines()
        if line.strip()
    ]
    queries = [t for t in titles if t] + [
        "where is my refund",
        "change delivery address",
        "reset my password",
        "package arrived broken",
        "cancel my subscription",
    ]
    return Setup(
        base=base,
        paths={ch: acc.webhook_path for ch, acc in made.items() if ch != "chatbot"},
        webchat_token=made["webchat"].webhook_path.rstrip("/").rsplit("/", 1)[1],
        agent_key=agent_key,
        integration_key=integration_key,
        first_ticket_id=(Ticket.objects.aggregate(m=Max("id"))["m"] or 0) + 1,
        kb_queries=queries,
    )


def start_processes(
    commands: dict[str, list[str]], env: dict[str, str], logs: Path
) -> dict[str, subprocess.Popen[bytes]]:
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        with (logs / f"{name}.log").open("wb") as out:
            procs[name] = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    return procs


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# --- memory and CPU sampling -------------------------------------------------------------


class Sampler(threading.Thread):
    """RSS of every process of the stack every ``interval`` seconds, and the load average."""

    def __init__(
        self, procs: dict[str, subprocess.Popen[bytes]], data: Path, interval: float, redis_url: str
    ):
        super().__init__(daemon=True)
        self.procs, self.data, self.interval = procs, data, interval
        self.redis_url = redis_url
        self.queues: list[tuple[float, dict[str, int]]] = []  # Celery queue lengths
        self.samples: list[tuple[float, dict[str, int]]] = []  # (monotonic, label -> rss)
        self.loads: list[tuple[float, float]] = []
        self.stop_event = threading.Event()
        self.labels: dict[str, str] = {}

    def _tree(self) -> dict[str, Any]:
        import psutil

        found: dict[str, Any] = {}
        for name, popen in self.procs.items():
            try:
                root = psutil.Process(popen.pid)
                found[f"{name} main {root.pid}"] = root
                for child in root.children(recursive=True):
                    found[f"{name} child {child.pid}"] = child
            except psutil.Error:
                continue
        for name, pidfile in (
            ("postgres", self.data / "pg" / "postmaster.pid"),
            ("redis", self.data / "redis-run" / "redis.pid"),
        ):
            try:
                pid = int(pidfile.read_text().split()[0])
                root = psutil.Process(pid)
                found[f"{name} main {pid}"] = root
                for child in root.children(recursive=True):
                    found[f"{name} child {child.pid}"] = child
            except (OSError, ValueError, psutil.Error):
                continue
        return found

    def queue_lengths(self) -> dict[str, int]:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        return {name: int(client.llen(name)) for name in ("realtime", "celery")}

    def run(self) -> None:
        import psutil

        while not self.stop_event.is_set():
            self.queues.append((time.monotonic(), self.queue_lengths()))
            rss: dict[str, int] = {}
            for label, proc in self._tree().items():
                try:
                    rss[label] = proc.memory_info().rss
                    if label not in self.labels:
                        self.labels[label] = " ".join(proc.cmdline()[:6])[:90]
                except psutil.Error:
                    continue
            now = time.monotonic()
            self.samples.append((now, rss))
            self.loads.append((now, os.getloadavg()[0]))
            self.stop_event.wait(self.interval)


def cpu_by_others(exclude: set[int]) -> dict[str, float]:
    """CPU seconds so far of every process not in ``exclude``, by short command name."""
    import psutil

    totals: dict[str, float] = defaultdict(float)
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        if proc.info["pid"] in exclude or proc.info["cpu_times"] is None:
            continue
        cmd = proc.info["cmdline"] or [proc.info["name"] or "?"]
        words = [Path(w).name for w in cmd[:3] if not w.startswith("-")]
        key = " ".join(words)[:60] or (proc.info["name"] or "?")
        times = proc.info["cpu_times"]
        totals[f"{proc.info['pid']}:{key}"] += times.user + times.system
    return totals


# --- payloads (built from the channels' own fixtures and the webhook bench) ---------------


class Payloads:
    def __init__(self, run: str, setup: Setup) -> None:
        from channels_app.fixtures import fixture_load

        self.run, self.setup = run, setup
        self.tag = f"soak{run}"
        self.meta = {
            ch: json.loads(fixture_load(ch, "text_message").body)
            for ch in ("messenger", "instagram")
        }
        self.x = json.loads(fixture_load("twitter", "dm_message_create").body)
        self.email = fixture_load("email", "inbound_parse_new")
        calls = ROOT / "calls" / "tests" / "fixtures"
        self.ctr = json.loads((calls / "ctr_billing.json").read_text())
        self.contact_event = json.loads((calls / "contact_event_connected.json").read_text())
        self.agent_event = json.loads((calls / "agent_state_acw.json").read_text())
        self.transcript = (calls / "transcribe_billing.json").read_bytes()
        from channels_app.models import ChannelAccount

        # loaded now: the ORM is not for the load's event loop
        for account in ChannelAccount.objects.filter(name="soak"):
            ACCOUNTS[account.channel] = account

    def signed(
        self,
        channel: str,
        body: bytes,
        headers: dict[str, str],
        session: dict[str, str] | None = None,
    ) -> dict[str, str]:
        from channels_app.fixtures import Fixture, signed_headers
        from channels_app.models import ChannelAccount

        account = ACCOUNTS.get(channel) or ChannelAccount.objects.get(channel=channel, name="soak")
        ACCOUNTS[channel] = account
        return signed_headers(account, Fixture(headers=headers, body=body, session=session))

    def whatsapp(self, i: int) -> tuple[bytes, str]:
        import webhook_intake

        body = webhook_intake.body_for(self.tag, i, 40)
        return body, f"wamid.bench.{self.tag}.{i}"

    def meta_channel(self, channel: str, i: int) -> tuple[bytes, str]:
        data = copy.deepcopy(self.meta[channel])
        item = data["entry"][0]["messaging"][0]
        mid = f"m_{self.tag}.{channel}.{i}"
        item["sender"]["id"] = f"{7000 + i % 40}{self.run[:4]}"
        item["timestamp"] = int(time.time() * 1000)
        item["message"] = {"mid": mid, "text": f"Soak {channel} message {i}: where is my order?"}
        return json.dumps(data, separators=(",", ":")).encode(), mid

    def twitter(self, i: int) -> tuple[bytes, str]:
        data = copy.deepcopy(self.x)
        event = data["direct_message_events"][0]
        dm_id = f"{self.tag}x{i}"
        event["id"] = dm_id
        event["created_timestamp"] = str(int(time.time() * 1000))
        event["message_create"]["sender_id"] = f"43378{i % 40:05d}"
        event["message_create"]["message_data"]["text"] = f"Soak DM {i}: my package never arrived"
        return json.dumps(data, separators=(",", ":")).encode(), dm_id

    def email_message(self, i: int) -> tuple[bytes, str]:
        msg_id = f"{self.tag}.{i}@mail.example.org"
        body = (
            self.email.body.replace(b"CAHqs2r1ExampleFirst@mail.example.org", msg_id.encode())
            .replace(b"jane.doe@example.org", f"soak{i % 20}@example.org".encode())
            .replace(b"Order 1234 arrived broken", f"Order {1000 + i} arrived broken".encode())
        )
        return body, msg_id


ACCOUNTS: dict[str, Any] = {}
ARGS: argparse.Namespace


# --- the load ----------------------------------------------------------------------------


class Load:
    def __init__(self, setup: Setup, run: str, stats: Stats, books: Books, data: Path) -> None:
        self.setup, self.run, self.stats, self.books, self.data = setup, run, stats, books, data
        self.payloads = Payloads(run, setup)
        self.history: dict[str, list[tuple[bytes, dict[str, str], str]]] = defaultdict(list)
        self.reply_targets: list[tuple[int, str]] = []  # (ticket id, channel)
        self.tickets: list[int] = []
        self.visitors: list[tuple[str, str]] = []  # (session token, visitor id)
        self.contacts: list[str] = []
        self.api = {"X-API-Key": setup.agent_key, "Content-Type": "application/json"}

    # webhooks ------------------------------------------------------------------------
    async def _webhook(
        self,
        conn: Conn,
        kind: str,
        channel: str,
        build: Callable[[], tuple[bytes, dict[str, str], str]],
    ) -> None:
        history = self.history[channel]
        resend = bool(history) and random.random() < ARGS.redeliver
        if resend:
            body, headers, ext_id = random.choice(history[-200:])
        else:
            body, headers, ext_id = build()
        status, payload = await conn.call(kind, "POST", self.setup.paths[channel], body, headers)
        if status != 200:
            return
        self.books.inbound[channel].add(ext_id)
        answer = json.loads(payload or b"{}")
        if resend and answer.get("status") == "accepted":
            self.books.resent_accepted += 1
        if not resend:
            history.append((body, headers, ext_id))

    async def wh_whatsapp(self, conn: Conn, i: int) -> None:
        def build() -> tuple[bytes, dict[str, str], str]:
            body, ext = self.payloads.whatsapp(i)
            return (
                body,
                self.payloads.signed("whatsapp", body, {"Content-Type": "application/json"}),
                ext,
            )

        await self._webhook(conn, "wh_whatsapp", "whatsapp", build)

    async def _meta(self, conn: Conn, i: int, channel: str) -> None:
        def build() -> tuple[bytes, dict[str, str], str]:
            body, ext = self.payloads.meta_channel(channel, i)
            return (
                body,
                self.payloads.signed(channel, body, {"Content-Type": "application/json"}),
                ext,
            )

        await self._webhook(conn, f"wh_{channel}", channel, build)

    async def wh_messenger(self, conn: Conn, i: int) -> None:
        await self._meta(conn, i, "messenger")

    async def wh_instagram(self, conn: Conn, i: int) -> None:
        await self._meta(conn, i, "instagram")

    async def wh_twitter(self, conn: Conn, i: int) -> None:
        def build() -> tuple[bytes, dict[str, str], str]:
            body, ext = self.payloads.twitter(i)
            headers = {"Content-Type": "application/json; charset=utf-8"}
            return body, self.payloads.signed("twitter", body, headers), ext

        await self._webhook(conn, "wh_twitter", "twitter", build)

    async def wh_email(self, conn: Conn, i: int) -> None:
        def build() -> tuple[bytes, dict[str, str], str]:
            body, ext = self.payloads.email_message(i)
            fixture = self.payloads.email
            return body, self.payloads.signed("email", body, dict(fixture.headers)), ext

        await self._webhook(conn, "wh_email", "email", build)

    async def wh_webchat(self, conn: Conn, i: int) -> None:
        if len(self.visitors) < 12 or random.random() < 0.05:  # a new visitor now and then
            n = len(self.visitors)
            status, payload = await conn.call(
                "webchat_session",
                "POST",
                f"/api/webchat/{self.setup.webchat_token}/session",
                json.dumps(
                    {"name": f"Soak Visitor {n}", "email": f"visitor{n}@example.com"}
                ).encode(),
                {"Content-Type": "application/json"},
            )
            if status == 201:
                answer = json.loads(payload)
                self.visitors.append((answer["session"], answer["visitor_id"]))
            if not self.visitors:
                return
        session, visitor = random.choice(self.visitors)
        client_id = f"{self.payloads.tag}-{i}"

        def build() -> tuple[bytes, dict[str, str], str]:
            body = json.dumps(
                {
                    "text": f"Soak chat {i}: can I change my delivery address?",
                    "client_id": client_id,
                    "page_url": "https://shop.example.com/orders",
                }
            ).encode()
            headers = {"Content-Type": "application/json", "X-Webchat-Session": session}
            return body, headers, f"{visitor}:{client_id}"

        await self._webhook(conn, "wh_webchat", "webchat", build)

    async def wh_chatbot(self, conn: Conn, i: int) -> None:
        from channels_app.adapters.meta.common import meta_signature

        history = self.history["chatbot"]
        if history and random.random() < ARGS.redeliver:
            body, headers, session_id = random.choice(history[-200:])
        else:
            session_id = f"{self.payloads.tag}-bot-{i}"
            body = json.dumps(
                {
                    "source": "soak-bot",
                    "customer_email": f"botuser{i % 30}@example.com",
                    "customer_name": f"Bot User {i % 30}",
                    "subject": f"Soak hand-off {i}",
                    "initial_message": "The bot could not help with my refund.",
                    "session_id": session_id,
                    "transcript": [{"role": "customer", "text": "refund?"}],
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Signature-256": meta_signature(SECRET, body),
            }
            history.append((body, headers, session_id))
        status, _ = await conn.call("wh_chatbot", "POST", "/api/webhooks/chatbot", body, headers)
        if status in (200, 201):
            self.books.chatbot_sessions.add(session_id)

    # API ----------------------------------------------------------------------------
    async def api_create(self, conn: Conn, i: int) -> None:
        subject = f"soak {self.run} api {i}"
        body = json.dumps(
            {
                "subject": subject,
                "description": "My order has not arrived and I need help with a refund.",
                "customer": {"email": f"soakapi{i % 50}@example.com", "name": f"Soak API {i % 50}"},
                "channel": "api",
            }
        ).encode()
        status, payload = await conn.call("api_create", "POST", "/api/tickets", body, self.api)
        if status == 201:
            self.books.api_subjects.add(subject)
            self.tickets.append(int(json.loads(payload)["id"]))

    async def ticket_list(self, conn: Conn, i: int) -> None:
        channels = ",".join(PROVIDER_CHANNELS)
        status, payload = await conn.call(
            "ticket_list", "GET", f"/api/tickets?channel={channels}&page_size=100", b"", self.api
        )
        if status != 200:
            return
        for row in json.loads(payload).get("results", []):
            pair = (int(row["id"]), str(row["channel"]))
            if pair[0] >= self.setup.first_ticket_id and pair not in self.reply_targets:
                self.reply_targets.append(pair)
                self.tickets.append(pair[0])

    async def reply(self, conn: Conn, i: int) -> None:
        if not self.reply_targets:
            return
        ticket_id, channel = random.choice(self.reply_targets[-300:])
        marker = f"soakreply-{self.run}-{i}"
        body = json.dumps(
            {
                "body": f"Thanks for your patience, we are looking into it. {marker}",
                "kind": "public",
            }
        ).encode()
        status, _ = await conn.call(
            "reply", "POST", f"/api/tickets/{ticket_id}/messages", body, self.api
        )
        if status == 201:
            self.books.replies[marker] = channel

    async def ticket_get(self, conn: Conn, i: int) -> None:
        if self.tickets:
            await conn.call(
                "ticket_get",
                "GET",
                f"/api/tickets/{random.choice(self.tickets[-500:])}",
                b"",
                self.api,
            )

    async def routing(self, conn: Conn, i: int) -> None:
        if self.tickets:
            ticket = random.choice(self.tickets[-500:])
            await conn.call("routing", "GET", f"/api/tickets/{ticket}/routing", b"", self.api)

    async def kb_search(self, conn: Conn, i: int) -> None:
        from urllib.parse import quote

        query = quote(random.choice(self.setup.kb_queries))
        await conn.call("kb_search", "GET", f"/api/kb/search?q={query}&k=5", b"", self.api)

    # calls --------------------------------------------------------------------------
    def _calls_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Api-Key {self.setup.integration_key}",
            "Content-Type": "application/json",
        }

    async def call_ctr(self, conn: Conn, i: int) -> None:
        contact = str(uuid.uuid4())
        record = copy.deepcopy(self.payloads.ctr)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        record["ContactId"] = record["InitialContactId"] = contact
        record["LastUpdateTimestamp"] = stamp
        record["CustomerEndpoint"]["Address"] = f"+1415555{i % 100:04d}"
        location = record["Recording"]["Location"].replace(
            "5ca32fbd-8f92-46af-92a5-6b0f970f0efe", contact
        )
        record["Recording"]["Location"] = location
        # the `local` transcription backend reads the result from storage
        target = self.data / "media" / "calls" / "results" / contact / "transcribe.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.payloads.transcript)
        status, _ = await conn.call(
            "call_ctr",
            "POST",
            "/api/calls/events",
            json.dumps(record).encode(),
            self._calls_headers(),
        )
        if status == 202:
            self.books.call_contacts.add(contact)
            self.books.call_events.add(f"{contact}:{stamp}")
            self.contacts.append(contact)

    async def call_contact(self, conn: Conn, i: int) -> None:
        event = copy.deepcopy(self.payloads.contact_event)
        contact = random.choice(self.contacts[-100:]) if self.contacts else str(uuid.uuid4())
        event["id"] = str(uuid.uuid4())
        event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event["detail"]["contactId"] = event["detail"]["initialContactId"] = contact
        status, _ = await conn.call(
            "call_contact",
            "POST",
            "/api/calls/events",
            json.dumps(event).encode(),
            self._calls_headers(),
        )
        if status == 202:
            self.books.call_events.add(event["id"])

    async def call_agent(self, conn: Conn, i: int) -> None:
        event = copy.deepcopy(self.payloads.agent_event)
        event["EventId"] = str(uuid.uuid4())
        event["EventTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        status, _ = await conn.call(
            "call_agent",
            "POST",
            "/api/calls/events",
            json.dumps(event).encode(),
            self._calls_headers(),
        )
        if status == 202:
            self.books.call_events.add(event["EventId"])

    # driver -------------------------------------------------------------------------
    async def drive(self, seconds: float, scale: float) -> float:
        from urllib.parse import urlsplit

        parts = urlsplit(self.setup.base)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        t0 = time.monotonic()
        end = t0 + seconds
        conns: list[Conn] = []

        async def kind_loop(
            name: str, rate: float, step: Callable[[Conn, int], Awaitable[None]]
        ) -> None:
            counter = iter(range(10**9))
            workers = max(1, min(4, int(rate * 2)))

            async def worker() -> None:
                conn = Conn(host, port, self.stats)
                conns.append(conn)
                for i in counter:
                    due = t0 + i / rate
                    if due >= end:
                        return
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    try:
                        await step(conn, i)
                    except Exception as exc:  # a bad answer is counted, not fatal
                        self.stats.record(name, -1, 0.0)
                        print(f"[soak] {name} #{i}: {type(exc).__name__}: {exc}", flush=True)

            await asyncio.gather(*(worker() for _ in range(workers)))

        loops = [
            kind_loop(name, rate * scale, getattr(self, name))
            for name, rate in RATES.items()
            if rate * scale > 0
        ]

        async def warm_up() -> None:
            await asyncio.sleep(0.2 * seconds)
            Conn.warming = False

        await asyncio.gather(warm_up(), *loops)
        for conn in conns:
            await conn.close()
        return time.monotonic() - t0


# --- the books -----------------------------------------------------------------------------


def provider_counts(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_counts", timeout=10) as response:  # loopback
        return dict(json.load(response))


def audit(books: Books, run: str, provider_url: str) -> dict[str, Any]:
    """Lost and duplicated, from the database (messages, tickets, call events) and the
    fake provider's own counts (replies)."""
    from django.db import close_old_connections

    from calls.models import Call, CallAnalytics, CallEvent, EventStatus
    from tickets.models import Direction, Message, Ticket

    close_old_connections()
    tag = f"soak{run}"
    out: dict[str, Any] = {"lost": {}, "duplicated": {}, "info": {}}
    for channel, expected in books.inbound.items():
        rows = Message.objects.filter(
            channel=channel, direction=Direction.INBOUND, channel_message_id__contains=tag
        ).values_list("channel_message_id", flat=True)
        found = Counter(str(r).strip("<>") for r in rows)
        out["lost"][f"inbound {channel}"] = len([e for e in expected if e not in found])
        out["duplicated"][f"inbound {channel}"] = sum(c - 1 for c in found.values() if c > 1)
        out["info"][f"inbound {channel} unacknowledged but recorded"] = len(set(found) - expected)
    bots = Counter(
        Ticket.objects.filter(channel="chatbot", origin_platform_id__contains=tag).values_list(
            "origin_platform_id", flat=True
        )
    )
    out["lost"]["chatbot hand-offs"] = len([s for s in books.chatbot_sessions if s not in bots])
    first_messages = Counter(
        Message.objects.filter(
            ticket__channel="chatbot",
            ticket__origin_platform_id__contains=tag,
            direction=Direction.INBOUND,
        ).values_list("ticket__origin_platform_id", flat=True)
    )
    out["duplicated"]["chatbot hand-offs"] = sum(c - 1 for c in bots.values() if c > 1) + sum(
        c - 1 for c in first_messages.values() if c > 1
    )
    subjects = Counter(
        Ticket.objects.filter(subject__startswith=f"soak {run} api ").values_list(
            "subject", flat=True
        )
    )
    out["lost"]["API creates"] = len([s for s in books.api_subjects if s not in subjects])
    out["duplicated"]["API creates"] = sum(c - 1 for c in subjects.values() if c > 1)
    counts = provider_counts(provider_url)
    accepted: dict[str, int] = counts["accepted"]
    out["lost"]["replies"] = len([m for m in books.replies if not accepted.get(m)])
    out["duplicated"]["replies"] = sum(c - 1 for m, c in accepted.items() if c > 1)
    failed = Message.objects.filter(
        direction=Direction.OUTBOUND,
        body_text__contains=f"soakreply-{run}-",
        delivery_status="failed",
    ).count()
    out["info"]["replies failed (dead letters)"] = failed
    out["info"]["replies by channel"] = dict(Counter(books.replies.values()))
    out["info"]["provider"] = {
        k: counts[k] for k in ("kinds", "injected", "unauthorized", "refreshes", "refresh_refused")
    }
    out["info"]["idempotency keys seen more than once"] = sum(
        1 for c in counts["keys"].values() if c > 1
    )
    events = dict(
        CallEvent.objects.filter(external_id__in=list(books.call_events)).values_list(
            "external_id", "status"
        )
    )
    out["lost"]["call events"] = len(
        [
            e
            for e in books.call_events
            if events.get(e) not in (EventStatus.PROCESSED, EventStatus.IGNORED)
        ]
    )
    calls = Counter(
        Call.objects.filter(contact_id__in=list(books.call_contacts)).values_list(
            "contact_id", flat=True
        )
    )
    out["lost"]["calls (CTR)"] = len([c for c in books.call_contacts if c not in calls])
    out["duplicated"]["calls (CTR)"] = sum(c - 1 for c in calls.values() if c > 1)
    out["info"]["calls analysed"] = CallAnalytics.objects.filter(
        call__contact_id__in=list(books.call_contacts)
    ).count()
    out["info"]["redeliveries answered accepted again"] = books.resent_accepted
    return out


def drain(
    books: Books, run: str, provider_url: str, seconds: float, sampler: Sampler
) -> tuple[dict[str, Any], float, float | None]:
    """Wait until nothing is missing and both Celery queues are empty (or ``seconds``);
    returns the books, the wait, and when the books were first complete."""
    started = time.monotonic()
    complete_at: float | None = None
    while True:
        result = audit(books, run, provider_url)
        elapsed = time.monotonic() - started
        if complete_at is None and not any(result["lost"].values()):
            complete_at = elapsed
        idle = not any(sampler.queue_lengths().values())
        if (complete_at is not None and idle) or elapsed > seconds:
            return result, elapsed, complete_at
        time.sleep(3)


# --- report --------------------------------------------------------------------------------


def _postgres_summed(sample: dict[str, int]) -> dict[str, int]:
    pg = ("postgres main", "postgres child")
    out = {k: v for k, v in sample.items() if not k.startswith(pg)}
    out["postgres (all processes)"] = sum(v for k, v in sample.items() if k.startswith(pg))
    return out


def memory_report(sampler: Sampler, load_start: float, load_end: float) -> list[dict[str, Any]]:
    warm = load_start + 0.2 * (load_end - load_start)
    during = [(t, s) for t, s in sampler.samples if load_start <= t <= load_end]
    after = [(t, s) for t, s in during if t >= warm]
    rows = []
    # PostgreSQL: one row for all its processes (backends come and go with the pools, and
    # each counts the shared buffers it touched)
    during = [(t, _postgres_summed(s)) for t, s in during]
    after = [(t, _postgres_summed(s)) for t, s in after]
    labels = sorted({label for _, s in during for label in s})
    for label in labels:
        series = [s[label] for _, s in after if label in s]
        if len(series) < 4:
            continue
        base = statistics.median(series[:3])
        end = statistics.median(series[-3:])
        rows.append(
            {
                "process": label,
                "cmd": sampler.labels.get(label, ""),
                "baseline_mb": base / 2**20,
                "end_mb": end / 2**20,
                "peak_mb": max(series) / 2**20,
                "growth": (end - base) / base if base else 0.0,
                "judged": not label.startswith(("postgres", "redis", "provider")),
            }
        )
    return rows


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="1 minute, a quick check")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every rate")
    parser.add_argument(
        "--redeliver", type=float, default=0.05, help="share of webhooks sent twice"
    )
    parser.add_argument(
        "--provider-errors",
        type=float,
        default=0.02,
        help="share of sends the fake provider answers 503",
    )
    parser.add_argument(
        "--x-token-ttl",
        type=float,
        default=360,
        help="X access token lifetime at the fake provider (refreshed in the run)",
    )
    parser.add_argument("--web-workers", default="3")
    parser.add_argument("--celery-concurrency", default="2")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--data-dir", default=str(ROOT / ".devdata" / "soak"))
    parser.add_argument("--redis-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL and Redis running")
    args = ARGS = parser.parse_args()
    # SIGTERM (e.g. `timeout`) cleans up as Ctrl-C does: the stack is stopped in `finally`.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.smoke:
        args.minutes = 1.0
    data = Path(args.data_dir).resolve()
    run = datetime.now(UTC).strftime("%H%M") + secrets.token_hex(2)
    print(
        f"[soak] run {run}: {args.minutes:g} min at scale {args.scale:g}; data in {data}",
        flush=True,
    )

    setup_started = time.monotonic()
    env = stack_start(args, data)
    port, provider_port = _harness.free_port(), _harness.free_port()
    base, provider_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{provider_port}"
    env.update(
        {
            "ENVIRONMENT": "dev",
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "SITE_URL": base,
            "META_GRAPH_API_BASE": provider_url,
            "X_API_BASE": provider_url,
            "SENDGRID_API_BASE": provider_url,
            "TICKETING_SYSTEM_URL": f"{provider_url}/ticketing",
            "X_TOKEN_REFRESH_MARGIN_SECONDS": str(int(args.x_token_ttl / 3)),
            "CHANNELS_OUTBOUND_BACKOFF_CAP": "30",
            "CALLS_TRANSCRIPTION_BACKEND": "local",
            "CALLS_AI_PROVIDER": "local",
            "CALLS_RECORDINGS_BUCKET": "connect-recordings-example",
            "CALLS_ALLOWED_S3_BUCKETS": "connect-recordings-example",
            "SALESFORCE_ENABLED": "false",
            "API_RATE_LIMIT_PER_MINUTE": "1000000",
            "DJANGO_SETTINGS_MODULE": "support.settings",
        }
    )
    os.environ.update(env)
    print("[soak] migrating a fresh database, loading demo data and the demo KB …", flush=True)
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "collectstatic", "--no-input", "-v", "0")
    manage(env, "load_demo")
    manage(env, "kb_ingest", "knowledge/demo_data/articles.jsonl", "--source", "demo")
    import django

    django.setup()
    setup = accounts_and_keys(base)

    import run as run_script  # scripts/run.py: the processes `make run` starts

    commands = run_script.process_commands(
        host="127.0.0.1",
        port=port,
        web_workers=args.web_workers,
        celery_concurrency=args.celery_concurrency,
        schedule=data / "celerybeat-schedule",
    )
    commands["provider"] = [
        PY,
        str(ROOT / "bench" / "_fake_provider.py"),
        "--port",
        str(provider_port),
        "--error-rate",
        str(args.provider_errors),
        "--x-token-ttl",
        str(args.x_token_ttl),
    ]
    procs = start_processes(commands, env, data / "logs")
    stats, books = Stats(), Books()
    sampler = Sampler(procs, data, args.sample_seconds, env["REDIS_URL"])
    code = 1
    try:
        _harness.wait_for(f"{base}/health", timeout=120)
        _harness.wait_for(f"{provider_url}/_counts", timeout=30)
        time.sleep(5)  # the workers connect to the broker
        print(
            f"[soak] stack up in {time.monotonic() - setup_started:.0f} s; "
            f"load for {args.minutes:g} min",
            flush=True,
        )
        ours = {p.pid for p in procs.values()}
        sampler.start()
        import psutil

        for proc in procs.values():
            with contextlib.suppress(psutil.Error):
                ours |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        ours.add(os.getpid())
        cpu_before = cpu_by_others(set())
        load_start = time.monotonic()
        load = Load(setup, run, stats, books, data)
        elapsed = asyncio.run(load.drive(args.minutes * 60, args.scale))
        load_end = time.monotonic()
        cpu_after = cpu_by_others(set())
        print(
            f"[soak] load done in {elapsed:.0f} s; "
            f"waiting for the backlog (≤ {args.drain_seconds:.0f} s) …",
            flush=True,
        )
        books_result, drained, complete_at = drain(
            books, run, provider_url, args.drain_seconds, sampler
        )
        sampler.stop_event.set()
        sampler.join()
        code = report(
            args,
            run,
            stats,
            books,
            books_result,
            (drained, complete_at),
            elapsed,
            sampler,
            load_start,
            load_end,
            cpu_before,
            cpu_after,
            ours,
            procs,
            data,
        )
    finally:
        sampler.stop_event.set()
        stop_processes(procs)
        if not args.keep:
            stack_stop(data)
    return code


def report(
    args: argparse.Namespace,
    run: str,
    stats: Stats,
    books: Books,
    books_result: dict[str, Any],
    drain_times: tuple[float, float | None],
    elapsed: float,
    sampler: Sampler,
    load_start: float,
    load_end: float,
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    ours: set[int],
    procs: dict[str, subprocess.Popen[bytes]],
    data: Path,
) -> int:
    total = sum(len(v) for v in stats.latencies.values())
    print()
    print(
        f"== soak {run}: {elapsed / 60:.1f} min, {total} requests, {total / elapsed:.1f} req/s =="
    )
    print(f"{'kind':<18}{'n':>7}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  statuses")
    fives = broken = 0
    per_kind: dict[str, Any] = {}
    for kind in sorted(stats.latencies):
        lat = [x * 1000 for x in stats.latencies[kind]]
        codes = stats.statuses[kind]
        fives += sum(n for s, n in codes.items() if s >= 500)
        broken += sum(n for s, n in codes.items() if s <= 0)
        p50, p99 = _harness.percentile(lat, 50), _harness.percentile(lat, 99)
        shown = " ".join(f"{s}:{n}" for s, n in sorted(codes.items()))
        print(
            f"{kind:<18}{len(lat):>7}{len(lat) / elapsed:>8.2f}{p50:>9.1f}{p99:>9.1f}"
            f"{max(lat):>9.1f}  {shown}"
        )
        per_kind[kind] = {"n": len(lat), "p50_ms": p50, "p99_ms": p99, "statuses": dict(codes)}
    print(f"5xx: {fives}   broken connections / client errors: {broken}")

    rows = memory_report(sampler, load_start, load_end)
    print(
        "\nmemory (RSS) after warm-up (first 20% of the run): baseline = median of the first 3"
        " samples after it, end = median of the last 3 during load"
    )
    print(f"{'process':<34}{'base MB':>9}{'end MB':>9}{'peak MB':>9}{'growth':>9}  command")
    over = []
    for row in rows:
        flag = ""
        if row["judged"] and row["growth"] > GROWTH_LIMIT:
            over.append(row["process"])
            flag = "  << over 10%"
        print(
            f"{row['process']:<34}{row['baseline_mb']:>9.1f}{row['end_mb']:>9.1f}"
            f"{row['peak_mb']:>9.1f}{row['growth'] * 100:>8.1f}%  {row['cmd'][:60]}{flag}"
        )
    loads = [v for t, v in sampler.loads if load_start <= t <= load_end]
    if loads:
        print(
            f"\nload average (1 min) during the run: min {min(loads):.2f}, "
            f"mean {statistics.mean(loads):.2f}, max {max(loads):.2f} on {os.cpu_count()} cores"
        )
    others: dict[str, float] = defaultdict(float)
    for key, value in cpu_after.items():
        pid = int(key.split(":", 1)[0])
        if pid in ours:
            continue
        others[key.split(":", 1)[1]] += value - cpu_before.get(key, 0.0)
    mine = sum(
        v - cpu_before.get(k, 0.0) for k, v in cpu_after.items() if int(k.split(":", 1)[0]) in ours
    )
    busiest = sorted(others.items(), key=lambda kv: -kv[1])[:8]
    print(
        f"CPU seconds during the load: the soak's own processes {mine:.0f}; others "
        f"{sum(others.values()):.0f}, busiest: "
        + ", ".join(f"{name} {sec:.0f}" for name, sec in busiest if sec >= 1)
    )

    drained, complete_at = drain_times
    during_q = [q for t, q in sampler.queues if load_start <= t <= load_end]
    if during_q:
        for name in ("realtime", "celery"):
            series = [q[name] for q in during_q]
            print(
                f"Celery queue {name!r} during the load: max {max(series)}, at the end {series[-1]}"
            )
    complete = f"{complete_at:.0f} s" if complete_at is not None else "never"
    print(f"\nbooks (complete {complete} after the load; queues drained after {drained:.0f} s):")
    lost = sum(books_result["lost"].values())
    dups = sum(books_result["duplicated"].values())
    for key in books_result["lost"]:
        print(
            f"  {key:<28} lost {books_result['lost'][key]:>5}   duplicated "
            f"{books_result['duplicated'].get(key, 0):>5}"
        )
    expected = {
        **{f"inbound {c}": len(v) for c, v in books.inbound.items()},
        "chatbot hand-offs": len(books.chatbot_sessions),
        "API creates": len(books.api_subjects),
        "replies": len(books.replies),
        "call events": len(books.call_events),
        "calls (CTR)": len(books.call_contacts),
    }
    print("  accepted: " + ", ".join(f"{k} {v}" for k, v in expected.items()))
    for key, value in books_result["info"].items():
        print(f"  {key}: {value}")
    misses = []
    if over:
        misses.append(f"memory growth over 10%: {', '.join(over)}")
    if lost:
        misses.append(f"{lost} lost")
    if dups:
        misses.append(f"{dups} duplicated")
    if fives:
        misses.append(f"{fives} 5xx")
    if broken:
        misses.append(f"{broken} broken connections / client errors")
    print("\nRESULT: " + ("all targets met" if not misses else "MISSED: " + "; ".join(misses)))
    print(f"(logs of every process in {data / 'logs'})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "run": run,
                    "minutes": args.minutes,
                    "scale": args.scale,
                    "elapsed_s": elapsed,
                    "requests": total,
                    "kinds": per_kind,
                    "fives": fives,
                    "broken": broken,
                    "memory": rows,
                    "books": books_result,
                    "accepted": expected,
                    "misses": misses,
                    "load_avg": loads,
                },
                indent=1,
                default=str,
            )
        )
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
