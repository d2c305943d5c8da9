#!/usr/bin/env python
"""The image's HEALTHCHECK (deploy/Dockerfile), for every process of the one image.

The web server is probed on ``/health/live`` (``PORT``, 8000): liveness only, a restart
does not fix a database outage. Every other process (``worker``, ``realtime``, ``beat``, the
SQS readers, ``migrate``) listens on nothing, so a probe of the port would mark it unhealthy
under plain Docker, Compose or Swarm: the check passes for them. The web server is told
apart by its command line (``support.asgi:application``, scripts/processes.py) among the
container's processes, so it is found also behind an init process (``docker run --init``).

Only the standard library: it runs in a fresh interpreter every 30 seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: What the web process's command line names (scripts/processes.py ``process_commands``).
WEB_APP = "support.asgi:application"


def command_lines(proc: Path = Path("/proc")) -> Iterator[list[str]]:
    """The command line of every process this container sees."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        yield [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def runs_the_web_server(proc: Path = Path("/proc")) -> bool:
    return any(WEB_APP in args for args in command_lines(proc))


def check(*, port: int, proc: Path = Path("/proc"), timeout: float = 4.0) -> int:
    """0 (healthy) or 1: ``/health/live`` answers 200 when this container runs the web
    server; always 0 for a container that runs anything else."""
    if not runs_the_web_server(proc):
        return 0
    url = f"http://127.0.0.1:{port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 0 if response.status == 200 else 1
    except OSError:  # refused, timed out, or an HTTP error status
        return 1


if __name__ == "__main__":
    sys.exit(check(port=int(os.environ.get("PORT", "8000"))))
