#!/usr/bin/env python
"""Webhook intake benchmark: signed WhatsApp deliveries on loopback, 5% redelivered.

Prints accepted/s, p50/p99 acknowledgement latency, p95 time until the message is in
its ticket, and counts of lost and duplicated messages.

With ``--sockets N``, N signed-in workbench websockets (one supervisor, the rest agents in
two teams) are connected during the run, and it prints, per kind of socket, the p50/p95
from a message's first send to its ``message.created`` frame on the socket and how many
frames each got against how many it should have. A quarter of the run's customers then
have their ticket before the run (one message each, sent and processed first), moved to
team b, so that the agents of team a must not get those tickets' messages
(bench/_live_sockets.py).

    .venv/bin/python bench/webhook_intake.py                 # starts uvicorn + a worker
    .venv/bin/python bench/webhook_intake.py --url http://127.0.0.1:8000   # a `make run`

Started here, the server and worker use a database and Redis db of the bench's own on the
run profile's PostgreSQL and Redis (bench/_harness.py); with --url, the `make run` data.
Loopback only; bounded by --count and --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import _live_sockets

SECRET = "bench-app-secret"  # noqa: S105 - a local benchmark account


def body_for(run: str, i: int, senders: int, *, prepare: bool = False) -> bytes:
    """Delivery ``i`` of ``run`` (from customer ``i % senders``); ``prepare``: that
    customer's message sent before the run (its own message id and text)."""
    sender = f"1555{run[-4:]}{i % senders:05d}"
    message_id = f"wamid.bench.{run}p.{i}" if prepare else f"wamid.bench.{run}.{i}"
    text = f"bench prepare {i}" if prepare else f"bench message {i}"
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "bench-waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": "bench",
                            },
                            "contacts": [
                                {"profile": {"name": f"Bench {i % senders}"}, "wa_id": sender}
                            ],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": message_id,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_all(
    url: str, bodies: list[bytes], concurrency: int, max_seconds: float, rate: float = 0
) -> tuple[list[tuple[int, float, float, int]], float]:
    """POST every body with ``concurrency`` keep-alive connections (a minimal client, so
    the load generator does not eat the server's CPU); paced at ``rate``/s when given."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    results: list[tuple[int, float, float, int]] = []  # (index, sent_at, ack_seconds, status)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    deadline = time.monotonic() + max_seconds
    t0 = time.monotonic()

    async def worker() -> None:
        client = _harness.KeepAliveClient(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while not queue.empty() and time.monotonic() < deadline:
                i = queue.get_nowait()
                if rate > 0:  # open loop: request i leaves at t0 + i / rate
                    await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                body = bodies[i]
                sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                sent_at = time.time()
                start = time.perf_counter()
                try:
                    status, _ = await client.request(
                        "POST",
                        parts.path,
                        body,
                        {"Content-Type": "application/json", "X-Hub-Signature-256": sig},
                    )
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    status = 0
                    await client.close()
                    client = _harness.KeepAliveClient(
                        parts.hostname or "127.0.0.1", parts.port or 80
                    )
                results.append((i, sent_at, time.perf_counter() - start, status))
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return results, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="base URL of a running server (default: start one)")
    parser.add_argument("--count", type=int, default=3000, help="unique messages to send")
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests/s, paced (default: as fast as possible)"
    )
    parser.add_argument("--senders", type=int, default=300, help="distinct customers")
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="deliveries sent (and processed) first, not measured: servers run warm",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=180, help="wait for the worker to catch up"
    )
    parser.add_argument("--web-workers", default="2")
    parser.add_argument("--celery-concurrency", default="1", help="enrichment workers")
    parser.add_argument(
        "--sockets",
        type=int,
        default=0,
        help="workbench websockets connected during the run (one supervisor, the rest "
        "agents in two teams); 0: none, as the figures before it",
    )
    args = parser.parse_args()

    # A database and Redis db of the bench's own, unless measuring a running `make run`.
    env = _harness.setup_env(isolate=not args.url, db="support_bench_intake")
    if not args.url:
        _harness.forget_pending_events()
    env["LOG_LEVEL"] = "WARNING"
    from channels_app.services import channel_account_upsert

    account = channel_account_upsert(
        channel="whatsapp", name="bench", external_id="bench", app_secret=SECRET
    )
    base = args.url
    runners: list[list[str]] = []
    if not base:
        base = f"http://127.0.0.1:{_harness.free_port()}"
        port = int(base.rsplit(":", 1)[1])
        runners = [
            _harness.uvicorn_cmd(port, int(args.web_workers)),
            # as `make run`: web first, then intake and events, then enrichment (nice 10, 15)
            _harness.celery_cmd(2, queues="realtime", nice=10),
            _harness.celery_cmd(int(args.celery_concurrency), queues="celery", nice=15),
        ]
    with _harness.processes(runners, env) as procs:
        _measure(args, base, account.webhook_path, procs=procs)
    if runners:
        _harness.drop_queued_tasks(env)


def _wait_processed(prefix: str, count: int, seconds: float) -> None:
    from tickets.models import Message

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if Message.objects.filter(channel_message_id__startswith=prefix).count() >= count:
            return
        time.sleep(0.3)


def _cpu_sample(
    procs: list[subprocess.Popen[bytes]], sockets: _live_sockets.SocketClients | None = None
) -> dict[str, float]:
    """CPU seconds so far: web (uvicorn and its workers), the two Celery workers,
    PostgreSQL (the run profile's cluster), this client and the websockets' process."""
    import services  # scripts/services.py

    sessions = _harness.session_cpu_seconds([p.pid for p in procs])
    names = ["web", "realtime worker", "enrichment worker"]
    sample = {names[i]: sessions[p.pid] for i, p in enumerate(procs[: len(names)])}
    sample["postgres"] = _harness.postgres_cpu_seconds(services.pg_dir("run"))
    sample["client"] = time.process_time()
    if sockets is not None:
        sample["sockets client"] = sockets.cpu_seconds()
    return sample


def _cpu_report(
    before: dict[str, float], after: dict[str, float], accepted: int, what: str = ""
) -> None:
    if not before or not accepted:
        return
    parts = [
        f"{name} {(after[name] - before[name]) / accepted * 1000:.2f}"
        for name in before
        if name in after
    ]
    print(f"cpu ms per accepted{what}: " + ", ".join(parts))


def _measure(
    args: argparse.Namespace, base: str, path: str, *, procs: list[subprocess.Popen[bytes]]
) -> None:
    started_here = bool(procs)

    _harness.wait_for(f"{base}/health")
    time.sleep(3 if started_here else 0)  # let the worker connect
    url = f"{base}{path}"
    if args.warmup:
        warm = "w" + datetime.now(UTC).strftime("%H%M%S") + f"{random.randrange(1000):03d}"
        asyncio.run(
            send_all(
                url,
                [body_for(warm, i, args.senders) for i in range(args.warmup)],
                args.concurrency,
                args.max_seconds,
            )
        )
        _wait_processed(f"wamid.bench.{warm}.", args.warmup, args.drain_seconds)
    run = datetime.now(UTC).strftime("%H%M%S") + f"{random.randrange(10000):04d}"
    sockets = None
    if args.sockets:
        _prepare_team_b(url, run, args)
        users = _live_sockets.socket_users(args.sockets)
        sockets = _live_sockets.SocketClients(int(base.rsplit(":", 1)[1]), users)
    try:
        _run(args, url, run, procs, sockets)
    finally:
        if sockets is not None:
            sockets.close()


def _prepare_team_b(url: str, run: str, args: argparse.Namespace) -> None:
    """A quarter of the run's customers (every fourth) write once before the run; once
    routed, their tickets move to team b (a ``ticket.updated`` each, relayed before the
    run starts), so their run messages thread into tickets team a may not see."""
    from django.db.models import Count

    from routing.models import RoutingDecision
    from support.models import OutboxEvent
    from tickets.models import Message, Ticket
    from tickets.services import ticket_update

    senders = range(0, args.senders, 4)
    bodies = [body_for(run, s, args.senders, prepare=True) for s in senders]
    asyncio.run(send_all(url, bodies, args.concurrency, args.max_seconds))
    prefix = f"wamid.bench.{run}p."
    _wait_processed(prefix, len(bodies), args.drain_seconds)
    ticket_ids = set(
        Message.objects.filter(channel_message_id__startswith=prefix).values_list(
            "ticket_id", flat=True
        )
    )
    deadline = time.monotonic() + args.drain_seconds
    while time.monotonic() < deadline:  # routing keeps a team it finds: route first
        routed = RoutingDecision.objects.filter(ticket_id__in=ticket_ids).aggregate(
            n=Count("ticket_id", distinct=True)
        )["n"]
        if routed >= len(ticket_ids):
            break
        time.sleep(0.3)
    _, team_b = _live_sockets.teams()
    for ticket in Ticket.objects.filter(pk__in=ticket_ids):
        ticket_update(ticket=ticket, team=team_b, reason="bench: team b")
    pending = OutboxEvent.objects.filter(delivered_at__isnull=True, failed_at__isnull=True)
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    print(
        f"[bench] {len(ticket_ids)} of the run's {args.senders} customers' tickets "
        "prepared in team b",
        flush=True,
    )


def _run(
    args: argparse.Namespace,
    url: str,
    run: str,
    procs: list[subprocess.Popen[bytes]],
    sockets: _live_sockets.SocketClients | None,
) -> None:
    from tickets.models import Message

    bodies = [body_for(run, i, args.senders) for i in range(args.count)]
    n_dups = int(args.count * args.dup_rate)
    order = list(range(args.count)) + random.sample(range(args.count), n_dups)
    random.shuffle(order)
    sequence = [bodies[i] for i in order]
    print(
        f"[bench] {len(sequence)} POSTs ({args.count} unique, {n_dups} redelivered) "
        f"to {url} with concurrency {args.concurrency}"
        + (f" at {args.rate:g}/s" if args.rate else ""),
        flush=True,
    )
    print(f"[bench] load average before: {_load_average()}", flush=True)
    cpu_before = _cpu_sample(procs, sockets) if procs else {}
    results, elapsed = asyncio.run(
        send_all(url, sequence, args.concurrency, args.max_seconds, args.rate)
    )
    cpu_after = _cpu_sample(procs, sockets) if procs else {}
    load_after = _load_average()
    acks = [r[2] for r in results if r[3] == 200]
    accepted_ids = {order[r[0]] for r in results if r[3] == 200}
    errors = [r for r in results if r[3] != 200]
    first_sent: dict[int, float] = {}
    for i, sent_at, _, status in results:
        if status == 200:
            key = order[i]
            first_sent[key] = min(first_sent.get(key, sent_at), sent_at)
    wanted = {f"wamid.bench.{run}.{i}": i for i in accepted_ids}
    deadline = time.monotonic() + args.drain_seconds
    found: dict[str, datetime] = {}
    while time.monotonic() < deadline:
        rows = Message.objects.filter(
            channel="whatsapp", channel_message_id__startswith=f"wamid.bench.{run}."
        ).values_list("channel_message_id", "created_at")
        found = {str(mid): at for mid, at in rows}
        if len(found) >= len(wanted):
            break
        time.sleep(0.5)
    total_rows = Message.objects.filter(
        channel="whatsapp", channel_message_id__startswith=f"wamid.bench.{run}."
    ).count()
    into_ticket = [
        found[mid].timestamp() - first_sent[i] for mid, i in wanted.items() if mid in found
    ]
    lost = len([m for m in wanted if m not in found])
    duplicated = total_rows - len(found)
    live = _live_events(run, wanted, first_sent, deadline)
    socket_lines = _socket_report(run, wanted, first_sent, sockets, args.drain_seconds)
    cpu_drained = _cpu_sample(procs, sockets) if procs else {}
    print(f"[bench] sent {len(results)} in {elapsed:.2f}s; non-200: {len(errors)}")
    print(f"accepted/s          {len(acks) / elapsed:8.1f}")
    print(f"ack p50             {_harness.percentile(acks, 50) * 1000:8.1f} ms")
    print(f"ack p99             {_harness.percentile(acks, 99) * 1000:8.1f} ms")
    print(f"into ticket p50     {_harness.percentile(into_ticket, 50) * 1000:8.1f} ms")
    print(f"into ticket p95     {_harness.percentile(into_ticket, 95) * 1000:8.1f} ms")
    if live:
        print(f"live event p50      {_harness.percentile(live, 50) * 1000:8.1f} ms")
        print(f"live event p95      {_harness.percentile(live, 95) * 1000:8.1f} ms")
    for line in socket_lines:
        print(line)
    print(f"lost                {lost:8d}   (not in a ticket within {args.drain_seconds:.0f}s)")
    print(f"duplicated          {duplicated:8d}")
    if acks:
        print(
            f"(ack mean {statistics.mean(acks) * 1000:.1f} ms; "
            f"{len(set(order)) - len(accepted_ids)} unique never accepted)"
        )
    # CPU over the sending only (the drain that follows is not counted), per 200 answer
    _cpu_report(cpu_before, cpu_after, len(acks))
    # ... and until every message was in its ticket and relayed (and, with sockets, every
    # socket had its frames or the drain time ran out): the backlog a run leaves counts too
    _cpu_report(cpu_before, cpu_drained, len(acks), ", until drained")
    print(f"load average after sending: {load_after}")


def _live_events(
    run: str, wanted: dict[str, int], first_sent: dict[int, float], deadline: float
) -> list[float]:
    """Seconds from a message's first send until the relay delivered its ``message.created``
    event (to the workbench's websocket groups: what an agent sees), for every message in
    a ticket; waits for the relay until ``deadline``. Undelivered events count as the time
    waited (so a relay that falls behind shows)."""
    from support.models import OutboxEvent
    from tickets.models import Message

    sent_by_pk = {
        pk: first_sent[wanted[mid]]
        for pk, mid in Message.objects.filter(
            channel="whatsapp", channel_message_id__startswith=f"wamid.bench.{run}."
        ).values_list("pk", "channel_message_id")
        if mid in wanted
    }
    if not sent_by_pk:
        return []
    since = datetime.fromtimestamp(min(sent_by_pk.values()), UTC)
    delivered: dict[int, float] = {}
    while True:
        rows = OutboxEvent.objects.filter(
            event_type="message.created", created_at__gte=since, delivered_at__isnull=False
        ).values_list("payload__message_id", "delivered_at")
        delivered = {int(m): at.timestamp() for m, at in rows if m is not None and at}
        if all(pk in delivered for pk in sent_by_pk) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    now = time.time()
    return [delivered.get(pk, now) - sent for pk, sent in sent_by_pk.items()]


def _socket_report(
    run: str,
    wanted: dict[str, int],
    first_sent: dict[int, float],
    sockets: _live_sockets.SocketClients | None,
    seconds: float,
) -> list[str]:
    """Per kind of socket: first send → ``message.created`` frame p50/p95, and frames got
    against frames due (the run's messages in tickets the socket's user may see, by the
    tickets' teams, which do not change during the run). ``missing``: due, never came;
    ``not theirs``: came, not due (a visibility leak)."""
    from tickets.models import Message

    if sockets is None:
        return []
    rows = Message.objects.filter(
        channel="whatsapp", channel_message_id__startswith=f"wamid.bench.{run}."
    ).values_list("pk", "channel_message_id", "ticket__team_id")
    sent = {pk: first_sent[wanted[mid]] for pk, mid, _ in rows if mid in wanted}
    team_of = {pk: team for pk, mid, team in rows if mid in wanted}
    users = sockets.users
    expected = [
        {pk for pk, team in team_of.items() if _live_sockets.may_see(user, team)} for user in users
    ]
    results = sockets.collect(expected, seconds)
    lines = [f"live sockets        {len(users)} (first send -> message.created frame)"]
    for kind in _live_sockets.KINDS:
        mine = [i for i, user in enumerate(users) if user.kind == kind]
        if not mine:
            continue
        delays = [
            at - sent[pk] for i in mine for pk, at in results[i][0].items() if pk in expected[i]
        ]
        due = sum(len(expected[i]) for i in mine)
        got = sum(len(expected[i] & results[i][0].keys()) for i in mine)
        leaked = sum(len(results[i][0].keys() - expected[i]) for i in mine)
        frames = sum(results[i][1] for i in mine)
        worst = min(len(expected[i] & results[i][0].keys()) / len(expected[i] or [0]) for i in mine)
        lines.append(
            f"  {kind:<16} x{len(mine):<3} p50 {_harness.percentile(delays, 50) * 1000:7.1f} ms"
            f"  p95 {_harness.percentile(delays, 95) * 1000:7.1f} ms"
            f"  got {got}/{due} (missing {due - got}, not theirs {leaked}, "
            f"frames {frames}, worst socket {worst:.1%})"
        )
    return lines


def _load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
