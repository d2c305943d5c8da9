"""Customer-context benchmark: prints figures, asserts nothing.

    SUPPORT_REDIS_TEST_PORT=<port> .venv/bin/python bench/context.py [--requests 300]

Uses the test-profile PostgreSQL and Redis (started by ``scripts/services.py``) with its
own database ``support_bench`` and Redis db 2, so it never touches test or dev data.

1. Context endpoint: one customer with 1,000 interactions (PostgreSQL backend), 200 orders,
   20 tickets and 10 CSAT ratings. ``GET /api/tickets/{id}/context`` through Django's full
   stack (middleware, DRF auth with an API key, JSON rendering) in-process, measured warm
   (cache hit) and cold (cache entry deleted before each request).
   Then the same through uvicorn (ASGI, 1 worker) over a keep-alive HTTP connection.
2. Import: ``import_customers`` logic on a generated CSV of 100,000 customers (validation,
   COPY into a temporary table, one upsert), then the same file again (all updates).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _env() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "services.py"),
            "start",
            "--profile",
            "test",
            "--print-env",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value.strip("'")
    base = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = base.replace("/support?", "/support_bench?")
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/2"
    os.environ.setdefault("ENVIRONMENT", "test")
    os.environ["DJANGO_SETTINGS_MODULE"] = "support.settings"
    os.environ["DB_POOL"] = "false"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname='support_bench'").fetchone()
        if not exists:
            conn.execute('CREATE DATABASE "support_bench"')


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _summary(label: str, ms: list[float]) -> None:
    print(
        f"  {label:<6} n={len(ms)}  p50={_pct(ms, 50):6.2f} ms  p95={_pct(ms, 95):6.2f} ms  "
        f"p99={_pct(ms, 99):6.2f} ms  mean={statistics.fmean(ms):6.2f} ms"
    )


def seed_customer() -> tuple[int, str]:
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from support.auth.roles import AGENTS_GROUP
    from support.services import api_key_create
    from tickets.context.models import CsatFeedback, Interaction, Order
    from tickets.models import ChannelIdentity, Customer, Ticket

    rng = random.Random(7)
    now = timezone.now()
    customer = Customer.objects.filter(email="bench-context@example.com").first()
    if customer is None:
        customer = Customer.objects.create(
            name="Bench Customer", email="bench-context@example.com", vip_tier="gold"
        )
        ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id="+1555")
        tickets = [
            Ticket.objects.create(
                customer=customer,
                subject=f"Bench ticket {n}",
                status=rng.choice(["open", "resolved", "closed"]),
            )
            for n in range(20)
        ]
        statuses = ["delivered"] * 8 + ["refunded", "failed", "shipped", "cancelled"]
        Order.objects.bulk_create(
            Order(
                customer=customer,
                number=f"BENCH-{n:05d}",
                status=rng.choice(statuses),
                total=Decimal(rng.randint(500, 50000)) / 100,
                items=[{"sku": f"S{n}", "name": "Thing", "quantity": 1}],
                placed_at=now - timedelta(days=rng.randint(0, 700)),
            )
            for n in range(200)
        )
        Interaction.objects.bulk_create(
            Interaction(
                customer=customer,
                ticket=rng.choice(tickets),
                source_key=f"bench:{n}",
                channel=rng.choice(["email", "whatsapp", "webchat"]),
                kind=rng.choice(["message"] * 9 + ["ticket_reopened"]),
                summary="Where is my order? " * 5,
                sentiment_score=round(rng.uniform(-1, 1), 3),
                sentiment_label="neutral",
                occurred_at=now - timedelta(hours=rng.randint(0, 24 * 170)),
            )
            for n in range(1000)
        )
        CsatFeedback.objects.bulk_create(
            CsatFeedback(ticket=t, customer=customer, rating=rng.randint(1, 5))
            for t in tickets[:10]
        )
    user, _ = User.objects.get_or_create(username="bench-agent")
    user.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    _, raw_key = api_key_create(name="bench", user=user, rate_limit_per_minute=1_000_000)
    ticket = Ticket.objects.filter(customer=customer).order_by("id").first()
    assert ticket is not None
    return ticket.pk, raw_key


def bench_context(requests: int) -> None:
    from django.core.cache import cache
    from django.test import Client

    from tickets.context.cache import context_cache_key, local_cache
    from tickets.models import Ticket

    ticket_id, raw_key = seed_customer()
    customer_id = Ticket.objects.get(pk=ticket_id).customer_id
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    url = f"/api/tickets/{ticket_id}/context"
    first = client.get(url)
    if first.status_code != 200:
        print(f"  context endpoint answered {first.status_code}: {first.content[:300]!r}")
        return
    for _ in range(20):  # warm up the process (imports, connections)
        client.get(url)
    body = first.json()
    print(
        f"  customer {customer_id}: {body['orders']['count']} orders, "
        f"{body['sentiment']['scored_messages_90d']} scored messages in 90 d, "
        f"churn {body['churn']['level']} ({body['churn']['score']})"
    )
    cold: list[float] = []
    for _ in range(requests):
        cache.delete(context_cache_key(customer_id))
        local_cache.drop([customer_id])
        start = time.perf_counter()
        client.get(url)
        cold.append((time.perf_counter() - start) * 1000)
    warm: list[float] = []
    client.get(url)
    for _ in range(requests):
        start = time.perf_counter()
        client.get(url)
        warm.append((time.perf_counter() - start) * 1000)
    _summary("warm", warm)
    _summary("cold", cold)


def bench_context_http(requests: int, port: int) -> None:
    """The same endpoint through uvicorn (1 worker) over a keep-alive HTTP connection."""
    import http.client

    from django.core.cache import cache

    from tickets.context.cache import context_cache_key, local_cache
    from tickets.models import Ticket

    ticket_id, raw_key = seed_customer()
    customer_id = Ticket.objects.get(pk=ticket_id).customer_id
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "support.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "DB_POOL": "true"},
    )
    try:
        conn = None
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/health")
                conn.getresponse().read()
                break
            except OSError:
                time.sleep(0.2)
        assert conn is not None
        headers = {"Authorization": f"Api-Key {raw_key}"}
        path = f"/api/tickets/{ticket_id}/context"

        def get() -> float:
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return (time.perf_counter() - start) * 1000

        for _ in range(20):
            get()
        cold = []
        for _ in range(requests):
            cache.delete(context_cache_key(customer_id))
            local_cache.drop([customer_id])
            cold.append(get())
        get()
        warm = [get() for _ in range(requests)]
        _summary("warm", warm)
        _summary("cold", cold)
    finally:
        server.terminate()
        server.wait(timeout=10)


def bench_import(rows: int) -> None:
    from django.db import connection

    from tickets.context.imports import customers_import

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tickets_customer WHERE email LIKE 'bench-import-%%'")
    rng = random.Random(3)
    tiers = ["none"] * 7 + ["silver", "gold", "platinum"]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "phone", "vip_tier", "account_type"])
        for n in range(rows):
            writer.writerow(
                [
                    f"bench-import-{n}@example.com",
                    f"Customer {n}",
                    f"+1 555 {n:07d}",
                    rng.choice(tiers),
                    rng.choice(["individual", "business"]),
                ]
            )
        path = fh.name
    try:
        for label in ("insert", "update"):
            start = time.perf_counter()
            with open(path, newline="") as handle:
                report = customers_import(handle)
            took = time.perf_counter() - start
            print(
                f"  {label}: {report.total} rows, {report.created} created, "
                f"{report.updated} updated, {len(report.rejected)} rejected in {took:.1f} s "
                f"({report.total / took:,.0f} rows/s)"
            )
    finally:
        os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8199")))
    args = parser.parse_args()
    _env()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print("load average (1/5/15 min) at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print("Context endpoint (GET /api/tickets/{id}/context, in-process, full stack):")
    bench_context(args.requests)
    if not args.skip_http:
        print(f"Context endpoint over HTTP (uvicorn, 1 worker, port {args.port}):")
        bench_context_http(args.requests, args.port)
    if not args.skip_import:
        print(f"Import of {args.import_rows:,} customers:")
        bench_import(args.import_rows)
    print("load average (1/5/15 min) at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
