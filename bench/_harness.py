"""Shared benchmark plumbing: local services, a bench API key, and server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))


def setup_env(*, isolate: bool = True, db: str = "") -> dict[str, str]:
    """Start (or reuse) the local PostgreSQL and Redis of `make run`; configure Django.

    ``isolate``: work in a database and Redis db of the bench's own (see :func:`isolated`).
    """
    import services

    env = dict(os.environ)
    env.setdefault("ENVIRONMENT", "dev")
    env.setdefault("DEBUG", "false")
    env.update(services.start("run"))
    if isolate:
        env.update(isolated(env, db or BENCH_DB))
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "REDIS_URL")})
    os.environ.setdefault("ENVIRONMENT", env["ENVIRONMENT"])
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return env


BENCH_DB = "support_bench_api"
BENCH_KB_DB = "support_bench_kb"  # bench/kb.py and bench/kb_ingest.py
BENCH_KB_NAMES_DB = "support_bench_kb_names"  # bench/kb_name_stats.py: 20,000 titles
BENCH_REDIS_DB = 3


def setup_kb_bench(*, as_script: bool, db: str = BENCH_KB_DB) -> None:
    """Django for the knowledge-base benches. Run as a script: the local services of
    `make run` (started if need be) and the database ``db`` beside the product's, so the
    bench's sources (100,000 synthetic chunks among them) never show up in the knowledge
    base `make run` serves. Imported (the tests): the importer's settings."""
    if as_script:
        setup_env(db=db)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    os.environ.setdefault("ENVIRONMENT", "dev")
    import django

    django.setup()


def isolated(env: dict[str, str], name: str = BENCH_DB) -> dict[str, str]:
    """A database and a Redis db of the bench's own, on the same local servers, so a bench
    never leaves tickets or queued tasks in the product's data (`make run`)."""
    import psycopg

    url = env["DATABASE_URL"]
    if "/support?" in url:
        with psycopg.connect(url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        url = url.replace("/support?", f"/{name}?")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    redis_url = env["REDIS_URL"].rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
    return {"DATABASE_URL": url, "REDIS_URL": redis_url}


def forget_pending_events() -> int:
    """Delete outbox events a previous run left undelivered in the bench's database (runs
    without a worker leave them all): this run's worker would otherwise spend its time
    relaying them, and the figures would measure that backlog."""
    from django.db import connection

    from support.models import OutboxEvent

    deleted, _ = OutboxEvent.objects.filter(delivered_at__isnull=True).delete()
    if deleted:  # now, rather than an autovacuum in the middle of the measurement
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {OutboxEvent._meta.db_table}")
    return deleted


def drop_queued_tasks(env: dict[str, str]) -> None:
    """Forget what the bench left in its own Redis db (tasks for its own database)."""
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def bench_api_key(name: str = "bench", group: str = "Agents") -> str:
    """A fresh API key for a bench user in ``group`` (an agent by default) with a very
    high rate limit."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from support.services import api_key_create

    user, _ = get_user_model().objects.get_or_create(username=f"{name}-user")
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    _, raw = api_key_create(name=name, user=user, rate_limit_per_minute=10_000_000)
    return raw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not come up")


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``commands`` (each in a session of its own, so :func:`session_cpu_seconds`
    can count a command's children too); stop them all on the way out. A uvicorn server
    gets the request-metrics directory `make run` gives it (scripts/processes.py), so
    benchmarks measure the multiprocess counters production runs with."""
    import processes as product_processes
    import services

    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=product_processes.metrics_dir_prepare(env, default=services.DATA / "metrics-bench")
            if Path(cmd[0]).name == "uvicorn"
            else env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd in commands
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _proc_stat(pid: str) -> tuple[int, int, float] | None:
    """(parent pid, session id, CPU seconds incl. reaped children) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # fields[0] is the state (field 3)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return int(fields[1]), int(fields[3]), ticks / os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session_ids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by every process of each session, the
    children it has reaped included (uvicorn's workers, Celery's pool processes)."""
    totals = dict.fromkeys(session_ids, 0.0)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and stat[1] in totals:
                totals[stat[1]] += stat[2]
    return totals


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster (with its reaped backends) and
    its live children."""
    try:
        postmaster = Path(data_dir, "postmaster.pid").read_text().split()[0]
    except (OSError, IndexError):
        return float("nan")
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and (entry == postmaster or str(stat[0]) == postmaster):
                total += stat[2]
    return total


def uvicorn_cmd(port: int, workers: int) -> list[str]:
    """The web process exactly as `make run` and the container start it
    (scripts/processes.py), on loopback, logging warnings only."""
    import processes as product_processes

    web = product_processes.process_commands(
        host="127.0.0.1", port=port, web_workers=str(workers), schedule=""
    )["web"]
    return [*web, "--log-level", "warning"]


def celery_cmd(concurrency: int = 1, queues: str = "realtime,celery", nice: int = 10) -> list[str]:
    """A Celery worker as `make run` starts them (scripts/processes.py), logging warnings."""
    import processes as product_processes

    return product_processes.celery_worker(
        f"bench-{queues.split(',')[0]}",
        queues=queues,
        concurrency=str(concurrency),
        nice=nice,
        log_level="WARNING",
    )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (far cheaper per request than
    a full client library, so the load generator does not eat the server's CPU)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: object = None
        self.writer: object = None

    async def connect(self) -> None:
        import asyncio

        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        import asyncio

        if self.writer is None:
            await self.connect()
        assert isinstance(self.writer, asyncio.StreamWriter)
        assert isinstance(self.reader, asyncio.StreamReader)
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:  # the server had closed the connection (e.g. its idle timeout)
            raise ConnectionResetError("connection closed before the status line")
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            payload = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                payload += chunk[:-2]
            return status, payload
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        import asyncio

        if isinstance(self.writer, asyncio.StreamWriter):
            self.writer.close()


def chunks_copy(cursor: Any, rows: Iterable[tuple[int, int, str, int, str, int, Any, str]]) -> None:
    """Write synthetic knowledge chunks in one COPY (bench/kb.py, bench/kb_name_stats.py):
    ``(document_id, source_id, kind, position, text, token_count, vector, embedder)`` per
    row; no heading, no embedding key, the search vector left to fill."""
    with cursor.cursor.copy(
        "COPY knowledge_chunk (document_id, source_id, kind, position, heading_path, "
        "text, token_count, embedding, embedding_key, embedder, created_at) FROM STDIN"
    ) as copy:
        for document_id, source_id, kind, position, text, tokens, vector, embedder in rows:
            embedding = "[" + ",".join(f"{x:.5f}" for x in vector) + "]"
            copy.write_row(
                (
                    document_id,
                    source_id,
                    kind,
                    position,
                    "",
                    text,
                    tokens,
                    embedding,
                    "",
                    embedder,
                    "now",
                )
            )
