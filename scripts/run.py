#!/usr/bin/env python
"""Run the whole product locally: services, migrations, demo data, web, worker, beat.

Ctrl-C stops every child process (PostgreSQL and Redis keep running for the next start;
`make stop` stops them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import processes  # noqa: E402
import services  # noqa: E402

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
WEB_WORKERS = os.environ.get("WEB_CONCURRENCY", "3")
CELERY_CONCURRENCY = os.environ.get("CELERY_CONCURRENCY", "2")
process_env = processes.process_env  # the environment every product process starts with


def process_commands(
    *,
    host: str,
    port: int,
    web_workers: str,
    celery_concurrency: str = CELERY_CONCURRENCY,
    schedule: Path | None = None,
) -> dict[str, list[str]]:
    """The product's processes as `make run` starts them (also used by bench/soak.py): the
    same table the container and the deployments use (scripts/processes.py)."""
    return processes.process_commands(
        host=host,
        port=port,
        web_workers=web_workers,
        celery_concurrency=celery_concurrency,
        schedule=schedule or services.DATA / "celerybeat-schedule",
    )


def step(message: str) -> None:
    print(f"[run] {message}", flush=True)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_healthy(url: str, timeout: float = 60.0) -> dict[str, object] | None:
    import json

    deadline = time.monotonic() + timeout
    last: dict[str, object] | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            last = dict(json.load(exc))
        except OSError:
            pass
        time.sleep(0.5)
    return last


def main() -> None:
    env = dict(os.environ)
    env.setdefault("ENVIRONMENT", "dev")
    env.setdefault("SITE_URL", f"http://{HOST}:{PORT}")
    env.update(services.start("run"))
    step("applying migrations")
    manage("migrate", "--no-input", env=env)
    step("collecting static files")
    manage("collectstatic", "--no-input", "-v", "0", env=env)
    step("loading demo data (idempotent)")
    manage("load_demo", env=env)
    manage("load_demo_calls", env=env)
    manage("kb_ingest", "knowledge/demo_data/articles.jsonl", "--source", "demo", env=env)

    commands = process_commands(host=HOST, port=PORT, web_workers=WEB_WORKERS)
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
        step(f"starting {name}: {shown}")
        child_env = env
        if name == "web":  # request metrics across the uvicorn workers
            child_env = processes.metrics_dir_prepare(env, default=services.DATA / "metrics-web")
        children[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=process_env(child_env), start_new_session=True
        )

    def stop(*_: object) -> None:
        step("stopping …")
        for proc in children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        step("stopped (PostgreSQL and Redis keep running; `make stop` stops them)")
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    url = f"http://{HOST}:{PORT}"
    mail_dir = Path(env.get("EMAIL_FILE_PATH") or services.DATA / "mail")
    if mail_dir.is_relative_to(ROOT):
        mail_dir = mail_dir.relative_to(ROOT)
    health = wait_healthy(f"{url}/health")
    print()
    if health and health.get("status") == "ok":
        step(f"health: ok {health.get('checks')}")
    else:
        step(f"health: NOT ok yet: {health}")
    password = env.get("DEMO_PASSWORD", "demo-password-123")
    print(
        f"""
  Support Desk is running at {url}/
    workbench  {url}/
    admin      {url}/admin/
    API docs   {url}/api/docs/
    health     {url}/health
    e-mails    {mail_dir}/   (files: the demo's replies and alerts)

  Sign in:  agent1     / {password}   (workbench)
            supervisor / {password}   (workbench, dashboard, supervisor admin)
            admin      / {password}   (superuser: users, API keys, channels)

  Ctrl-C stops it.
""",
        flush=True,
    )
    while True:
        for name, proc in children.items():
            if proc.poll() is not None:
                step(f"{name} exited with code {proc.returncode}; stopping the rest")
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
