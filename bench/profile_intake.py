#!/usr/bin/env python
"""In-process profile of WhatsApp webhook intake: SQL statements and time per request
(acknowledgement) and per message (processing). Uses the run profile's services.

    .venv/bin/python bench/profile_intake.py --count 200
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--show", action="store_true", help="print one message's statements")
    parser.add_argument("--cprofile", action="store_true", help="print the top functions")
    parser.add_argument(
        "--fastpath",
        action="store_true",
        help="acknowledgements only, through the ASGI fast path (as uvicorn runs it): "
        "CPU, statements, Redis commands and thread-pool hops per request",
    )
    args = parser.parse_args()
    import services  # scripts/services.py

    os.environ.update(services.start("run"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    os.environ.setdefault("ENVIRONMENT", "dev")  # local defaults (unset would mean prod)
    os.environ["DEBUG"] = "false"
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext
    from webhook_intake import SECRET, body_for

    from channels_app import services as channel_services
    from channels_app.api.views import webhook
    from support.celery import app as celery_app

    celery_app.conf.task_always_eager = False
    settings.ALLOWED_HOSTS = ["*"]
    import subprocess

    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    account = channel_services.channel_account_upsert(
        channel="whatsapp", name="bench", external_id="bench", app_secret=SECRET
    )
    run = f"prof{int(time.time())}"
    bodies = [body_for(run, i, args.senders) for i in range(args.count)]
    if args.fastpath:
        _fastpath_profile(account, bodies, SECRET, cprofile=args.cprofile)
        return
    factory = RequestFactory()
    path = account.webhook_path
    ids: list[int] = []
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    if args.cprofile:
        profiler.enable()
    start = time.perf_counter()
    with CaptureQueriesContext(connection) as ack_queries:
        for body in bodies:
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            request = factory.post(
                path, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sig
            )
            response = webhook(request, channel="whatsapp", token=account.webhook_token)
            assert response.status_code == 200, response.content
            import json

            ids.append(json.loads(response.content)["id"])
    ack = time.perf_counter() - start
    if args.cprofile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        profiler = cProfile.Profile()
        profiler.enable()
    print(
        f"ack: {ack / args.count * 1000:.2f} ms/request, "
        f"{len(ack_queries) / args.count:.2f} statements/request"
    )
    if args.show:
        for q in ack_queries.captured_queries[:6]:
            print("   ", q["sql"][:160])
    drain = getattr(channel_services, "inbound_events_drain", None)
    start = time.perf_counter()
    with CaptureQueriesContext(connection) as proc_queries:
        if drain is not None:
            done = 0
            while True:
                n = drain(account_id=account.pk).taken
                if not n:
                    break
                done += n
        else:
            for pk in ids:
                channel_services.inbound_event_process(event_id=pk)
    proc = time.perf_counter() - start
    if args.cprofile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(
            "channels_app|tickets|support|routing", 40
        )
        profiler = cProfile.Profile()
        profiler.enable()
    print(
        f"process: {proc / args.count * 1000:.2f} ms/message, "
        f"{len(proc_queries) / args.count:.2f} statements/message"
    )
    kinds = Counter(q["sql"].split()[0] for q in proc_queries.captured_queries)
    print("   ", dict(kinds))
    slow: dict[str, float] = {}
    for q in proc_queries.captured_queries:
        slow[q["sql"][:110]] = slow.get(q["sql"][:110], 0.0) + float(q["time"])
    print("    slowest statements (total seconds):")
    for sql, seconds in sorted(slow.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {seconds:7.3f}  {sql}")
    if args.show:
        for q in proc_queries.captured_queries[-60:]:
            print("   ", q["sql"][:200])
    from support.services import outbox_relay

    start = time.perf_counter()
    with CaptureQueriesContext(connection) as relay_queries:
        relayed = outbox_relay()
    relay = time.perf_counter() - start
    if args.cprofile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    if relayed:
        print(
            f"relay: {relayed} events, {relay / relayed * 1000:.2f} ms/event, "
            f"{len(relay_queries)} statements"
        )


def _fastpath_profile(account: Any, bodies: list[bytes], secret: str, *, cprofile: bool) -> None:
    """Drive ``WebhookFastPath`` in process, one request at a time, as uvicorn would: the
    first half of ``bodies`` timed (CPU of this process, all threads), the second half
    counted (statements, Redis commands, thread-pool hops)."""
    import asyncio
    import cProfile
    import pstats
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    import redis
    import redis.asyncio.connection
    from django.db import connections
    from django.db.backends import utils

    from channels_app.api.fastpath import WebhookFastPath

    async def django_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"handed to Django: {scope['path']}")

    app = WebhookFastPath(django_app, threads=8)

    async def one(body: bytes) -> int:
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        scope = {
            "type": "http",
            "method": "POST",
            "path": account.webhook_path,
            "query_string": b"",
            "scheme": "http",
            "client": ("127.0.0.1", 5555),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-hub-signature-256", sig.encode()),
            ],
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    async def run(batch: list[bytes]) -> None:
        for body in batch:
            status = await one(body)
            assert status == 200, status

    half = len(bodies) // 2
    asyncio.run(run(bodies[:1]))  # warm: account cache, script load, connection pool
    timed, counted = bodies[1 : half + 1], bodies[half + 1 :]
    profiler = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    if cprofile:
        profiler.enable()
    asyncio.run(run(timed))
    if cprofile:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if cprofile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)

    hops = Counter[str]()
    submit = ThreadPoolExecutor.submit

    def counting_submit(self: Any, fn: Any, /, *a: Any, **kw: Any) -> Any:
        hops[getattr(fn, "__name__", repr(fn))] += 1
        return submit(self, fn, *a, **kw)

    commands = Counter[str]()
    send_command = redis.connection.Connection.send_command

    def counting_send(self: Any, *a: Any, **kw: Any) -> Any:
        commands[str(a[0])] += 1
        return send_command(self, *a, **kw)

    async_send_command = redis.asyncio.connection.AbstractConnection.send_command

    async def counting_async_send(self: Any, *a: Any, **kw: Any) -> Any:
        commands[f"{a[0]} (asyncio)"] += 1
        return await async_send_command(self, *a, **kw)

    statements: list[str] = []
    execute = utils.CursorDebugWrapper.execute

    def counting_execute(self: Any, sql: Any, params: Any = None) -> Any:
        statements.append(str(sql))
        return execute(self, sql, params)

    wrapper = type(connections["default"])
    with (
        mock.patch.object(ThreadPoolExecutor, "submit", counting_submit),
        mock.patch.object(redis.connection.Connection, "send_command", counting_send),
        mock.patch.object(
            redis.asyncio.connection.AbstractConnection, "send_command", counting_async_send
        ),
        # the pool threads' connections too (each thread has its own)
        mock.patch.object(wrapper, "queries_logged", new=True),
        mock.patch.object(utils.CursorDebugWrapper, "execute", counting_execute),
    ):
        asyncio.run(run(counted))
    n, m = len(timed), len(counted)
    print(
        f"fast path: {wall / n * 1000:.2f} ms wall, {cpu / n * 1000:.2f} ms CPU per request "
        f"(this process, all threads; {n} requests); per request over {m} more: "
        f"{len(statements) / m:.2f} statements, {sum(commands.values()) / m:.2f} Redis "
        f"commands, {sum(hops.values()) / m:.2f} thread-pool hops"
    )
    print(f"    hops: {dict(hops)}")
    print(f"    redis: {dict(commands)}")
    print(f"    statements: {dict(Counter(sql.split()[0] for sql in statements))}")


if __name__ == "__main__":
    main()
