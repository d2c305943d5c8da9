#!/usr/bin/env python
"""The product's processes and the commands that start them: one table for `make run`
(scripts/run.py), the container entry point (deploy/entrypoint.sh), Elastic Beanstalk's
Procfile and the ECS services (deploy/), so a process added here is deployed the same way
everywhere (tests/test_deploy.py checks that each one has a service).

    python scripts/processes.py NAME     # replaces itself with process NAME (exec)
    python scripts/processes.py python manage.py createsuperuser   # any other command

NAME is one of ``web``, ``realtime``, ``worker``, ``beat`` (what `make run` starts), the SQS
readers ``kb-sqs``, ``calls-sqs`` and ``bda-results`` (which need an AWS queue, so `make run`
does not start them), or ``migrate`` (one-off, before a new release takes traffic). The
container's knobs come from its environment: ``PORT`` (8000), ``WEB_CONCURRENCY`` (2),
``REALTIME_CONCURRENCY`` (2), ``CELERY_CONCURRENCY`` (2), ``CELERYBEAT_SCHEDULE``
(/tmp/celerybeat-schedule), ``WEB_KEEP_ALIVE_SECONDS`` (130), and the queue URLs of the
readers (``KB_SQS_QUEUE_URL``, ``CALLS_SQS_QUEUE_URL``, ``CALLS_BDA_RESULTS_QUEUE_URL``). A
reader whose queue URL is unset says so once and idles until it is stopped (exit 0), so
that a platform starting every process (Elastic Beanstalk) does not restart it in a loop.

Only the standard library is imported here: scripts/run.py imports this before Django is
set up.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: SQS readers: process name -> (management command, environment variable with the queue
#: URL). ``bda-results`` is ``calls_poll_sqs`` on the second queue of seed 003 (S3 events
#: for Bedrock Data Automation's results in the output bucket); the command reads both
#: kinds of message.
READERS: dict[str, tuple[str, str]] = {
    "kb-sqs": ("kb_sqs_poll", "KB_SQS_QUEUE_URL"),
    "calls-sqs": ("calls_poll_sqs", "CALLS_SQS_QUEUE_URL"),
    "bda-results": ("calls_poll_sqs", "CALLS_BDA_RESULTS_QUEUE_URL"),
}
#: Run once per release, not as a service.
ONE_OFF = ("migrate",)

#: Environment every product process starts with unless the caller sets it. glibc gives each
#: thread that allocates its own malloc arena (up to 8 per core) and returns little of it:
#: the soak saw web workers' RSS grow 10-17% in ten minutes with the default, 1-6% with two
#: arenas (docs/benchmarks.md, "Soak"). The image's ENV says the same (deploy/Dockerfile).
PROCESS_ENV_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


#: How long uvicorn keeps an idle HTTP connection open, in seconds (WEB_KEEP_ALIVE_SECONDS):
#: longer than the load balancer's idle timeout (120 s, deploy/cloudformation), so the load
#: balancer, not uvicorn, closes an idle connection. With uvicorn's own 5 s the load balancer
#: reused connections uvicorn had just closed, and those requests answered 502.
WEB_KEEP_ALIVE_DEFAULT = "130"


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the process defaults filled in (the caller's values win)."""
    return {**PROCESS_ENV_DEFAULTS, **env}


#: prometheus_client's multiprocess mode: each web worker keeps its request counters in
#: files here and whichever worker answers ``/metrics`` sums them (support/request_metrics.py).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_DEFAULT = Path(tempfile.gettempdir()) / "support-metrics-web"


def metrics_dir_prepare(env: Mapping[str, str], *, default: Path | str) -> dict[str, str]:
    """``env`` for the web process: ``PROMETHEUS_MULTIPROC_DIR`` set (the caller's value
    wins, else ``default``), the directory created and emptied of the previous run's
    counter files (the workers that wrote them are gone; counters start again at 0, a
    restart to Prometheus). Only ``*.db`` files are removed, never anything else."""
    directory = Path(env.get(METRICS_DIR_ENV) or default)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return {**env, METRICS_DIR_ENV: str(directory)}


def celery_worker(
    name: str, *, queues: str, concurrency: str, nice: int, log_level: str = "INFO"
) -> list[str]:
    """A Celery worker for ``queues`` at CPU priority ``nice`` (web requests run at 0)."""
    return [
        "nice",
        "-n",
        str(nice),
        str(BIN / "celery"),
        "-A",
        "support",
        "worker",
        "-l",
        log_level,
        "-c",
        concurrency,
        "-Q",
        queues,
        "-n",
        f"{name}-{os.getpid()}@%h",
    ]


def process_commands(
    *,
    host: str,
    port: int,
    web_workers: str,
    celery_concurrency: str = "2",
    realtime_concurrency: str = "2",
    schedule: Path | str,
    keep_alive: str = WEB_KEEP_ALIVE_DEFAULT,
) -> dict[str, list[str]]:
    """The long-running processes as `make run` starts them (also bench/soak.py and the
    container)."""
    return {
        "web": [
            str(BIN / "uvicorn"),
            "support.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            web_workers,
            "--no-access-log",
            # The app reads X-Forwarded-For itself (TRUSTED_PROXY_HOPS / _CIDRS): uvicorn
            # must not let any client pick its own address; the scheme comes from
            # X-Forwarded-Proto through SECURE_PROXY_SSL_HEADER.
            "--no-proxy-headers",
            # Websocket frames: uvicorn buffers up to 16 MiB by default; the consumers
            # parse at most 64 Ki characters (support.websockets.WS_FRAME_MAX_CHARS).
            "--ws-max-size",
            "262144",
            "--timeout-graceful-shutdown",
            "5",
            # Idle connections outlive the load balancer's (WEB_KEEP_ALIVE_DEFAULT).
            "--timeout-keep-alive",
            keep_alive,
        ],
        # What people wait for (intake, live events, replies) has a worker of its own; the
        # enrichment behind it (routing, sentiment, ...) yields the CPU to it and to web
        # requests when they share a machine, and its queue absorbs the difference.
        # Realtime: the intake drain and the event relay side by side.
        "realtime": celery_worker(
            "realtime", queues="realtime", concurrency=realtime_concurrency, nice=10
        ),
        "worker": celery_worker("worker", queues="celery", concurrency=celery_concurrency, nice=15),
        # Beat must run exactly once per deployment (one ECS task, one instance).
        "beat": [
            str(BIN / "celery"),
            "-A",
            "support",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(schedule),
        ],
    }


def manage_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def reader_unconfigured(name: str, env: Mapping[str, str]) -> bool:
    """Whether ``name`` is an SQS reader whose queue URL its environment does not give."""
    return name in READERS and not env.get(READERS[name][1], "").strip()


def idle_unconfigured(name: str) -> NoReturn:
    """Say once that reader ``name`` is not configured, then wait for SIGTERM / SIGINT and
    exit 0. A platform that runs every process unconditionally (Elastic Beanstalk's
    Procfile) would otherwise restart an exiting reader in a loop."""
    variable = READERS[name][1]

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"{name}: not configured ({variable} is not set), idle: set {variable} to the SQS "
        "queue URL it reads to start it",
        file=sys.stderr,
        flush=True,
    )
    while True:
        signal.pause()


def reader_command(name: str, env: Mapping[str, str]) -> list[str]:
    """The SQS reader ``name`` on the queue its environment variable names (``main``
    idles instead when it is unset: ``reader_unconfigured``)."""
    command, variable = READERS[name]
    queue_url = env.get(variable, "").strip()
    if not queue_url:
        raise SystemExit(f"{name}: set {variable} to the SQS queue URL it reads")
    if command == "kb_sqs_poll":
        return manage_command(command, "--queue-url", queue_url)
    return manage_command(command, queue_url)


def web_keep_alive(env: Mapping[str, str]) -> str:
    """``WEB_KEEP_ALIVE_SECONDS`` (empty or unset: ``WEB_KEEP_ALIVE_DEFAULT``), a whole
    number of seconds above 0."""
    value = env.get("WEB_KEEP_ALIVE_SECONDS", "").strip() or WEB_KEEP_ALIVE_DEFAULT
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"WEB_KEEP_ALIVE_SECONDS must be a whole number of seconds, not {value!r}")
    return value


def container_command(name: str, env: Mapping[str, str]) -> list[str]:
    """The command the container (and Elastic Beanstalk's Procfile) runs for ``name``."""
    if name == "migrate":
        return manage_command("migrate", "--no-input")
    if name in READERS:
        return reader_command(name, env)
    commands = process_commands(
        host="0.0.0.0",  # noqa: S104 - inside the container, behind the load balancer
        port=int(env.get("PORT", "8000")),
        web_workers=env.get("WEB_CONCURRENCY", "2"),
        celery_concurrency=env.get("CELERY_CONCURRENCY", "2"),
        realtime_concurrency=env.get("REALTIME_CONCURRENCY", "2"),
        schedule=env.get("CELERYBEAT_SCHEDULE", "/tmp/celerybeat-schedule"),
        keep_alive=web_keep_alive(env),
    )
    if name not in commands:
        known = ", ".join([*commands, *READERS, *ONE_OFF])
        raise SystemExit(f"unknown process {name!r}; one of: {known}")
    return commands[name]


def service_names() -> list[str]:
    """Every long-running process that a deployment runs as a service."""
    local = process_commands(host="", port=0, web_workers="1", schedule="")
    return [*local, *READERS]


def main(argv: list[str]) -> None:
    """Exec process ``argv[0]``; anything else is run as given (``python manage.py ...``
    in a one-off task, e.g. creating the first supervisor)."""
    if not argv:
        names = ", ".join([*service_names(), *ONE_OFF])
        raise SystemExit(f"usage: processes.py NAME  (one of: {names}) | COMMAND [ARG ...]")
    known = len(argv) == 1 and argv[0] in {*service_names(), *ONE_OFF}
    if known and reader_unconfigured(argv[0], os.environ):
        idle_unconfigured(argv[0])
    command = container_command(argv[0], os.environ) if known else argv
    env = dict(os.environ)
    if argv == ["web"]:
        env = metrics_dir_prepare(env, default=METRICS_DIR_DEFAULT)
    os.chdir(ROOT)
    sys.stdout.flush()
    # the table above, or what the operator typed
    os.execvpe(command[0], command, process_env(env))  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
