"""The soak's load (bench/soak.py): what it offers, the payloads (built from the
channels' own fixtures and the webhook bench), the paced connections and what the server
accepted (the books to check at the end)."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

ROOT = _harness.ROOT
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
    # "kind: ExceptionName" -> count, for the requests recorded with status 0
    errors: Counter[str] = field(default_factory=Counter)
    # requests sent again on a new connection because a reused keep-alive connection was
    # found closed before any byte of the answer (what HTTP clients do; never counted as ok
    # silently: printed in the report)
    stale_retries: int = 0

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
        reused = self.used > 1
        try:
            status, payload = await asyncio.wait_for(
                self.client.request(method, path, body, headers), timeout=60
            )
        except (ConnectionResetError, BrokenPipeError) as exc:
            # A reused connection the server closed (its keep-alive timer can fire while
            # this process waits for a core): no byte of an answer came, so send it again
            # once on a new connection, as HTTP clients and the providers themselves do.
            # The books still catch a request the server had processed (a duplicate).
            await self.client.close()
            self.client = _harness.KeepAliveClient(self.host, self.port)
            self.used = 1
            if reused:
                self.stats.stale_retries += 1
                status, payload = await self._once(kind, method, path, body, headers)
            else:
                status, payload = 0, b""
                self.stats.errors[f"{kind}: {type(exc).__name__}"] += 1
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            status, payload = 0, b""
            self.stats.errors[f"{kind}: {type(exc).__name__}"] += 1
            await self.client.close()
            self.client = _harness.KeepAliveClient(self.host, self.port)
        self.stats.record(kind, status, time.perf_counter() - started)
        self.last = time.monotonic()
        return status, payload

    async def _once(
        self, kind: str, method: str, path: str, body: bytes, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(
                self.client.request(method, path, body, headers), timeout=60
            )
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.stats.errors[f"{kind}: {type(exc).__name__} (after a retry)"] += 1
            await self.client.close()
            self.client = _harness.KeepAliveClient(self.host, self.port)
            return 0, b""

    async def close(self) -> None:
        await self.client.close()


@dataclass
class Setup:
    base: str
    paths: dict[str, str]  # channel -> webhook path
    webchat_token: str
    agent_key: str
    integration_key: str
    first_ticket_id: int
    kb_queries: list[str]


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

# --- the load ----------------------------------------------------------------------------


class Load:
    def __init__(
        self, setup: Setup, run: str, stats: Stats, books: Books, data: Path, *, redeliver: float
    ) -> None:
        self.setup, self.run, self.stats, self.books, self.data = setup, run, stats, books, data
        self.redeliver = redeliver
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
        resend = bool(history) and random.random() < self.redeliver
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
        if history and random.random() < self.redeliver:
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
    async def drive(self, seconds: float, scale: float, only: set[str] | None = None) -> float:
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
            if rate * scale > 0 and (not only or name in only)
        ]

        async def warm_up() -> None:
            await asyncio.sleep(0.2 * seconds)
            Conn.warming = False

        await asyncio.gather(warm_up(), *loops)
        for conn in conns:
            await conn.close()
        return time.monotonic() - t0
