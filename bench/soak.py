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
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
from _soak_books import Sampler, cpu_by_others, drain, report
from _soak_load import RATES, SECRET, Books, Load, Setup, Stats

ROOT = _harness.ROOT
PY = sys.executable

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


def accounts_and_keys(base: str, *, x_token_ttl: float) -> Setup:
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
        access_token_expires_at=timezone.now() + timedelta(seconds=x_token_ttl),
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


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
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
    parser.add_argument(
        "--only", help=f"comma list of kinds to offer (to find what grows): {', '.join(RATES)}"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL and Redis running")
    args = parser.parse_args()
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
    setup = accounts_and_keys(base, x_token_ttl=args.x_token_ttl)

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
    procs = start_processes(commands, run_script.process_env(env), data / "logs")
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
        load = Load(setup, run, stats, books, data, redeliver=args.redeliver)
        only = set(args.only.split(",")) if args.only else None
        elapsed = asyncio.run(load.drive(args.minutes * 60, args.scale, only))
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


if __name__ == "__main__":
    sys.exit(main())
