"""A Redis database of its own for each pytest-xdist worker (``scripts/test.sh`` runs the
suite on several workers).

Tests clear the cache (``FLUSHDB``) after each test and use channel-layer groups, rate-limit
counters and flags in Redis: two workers on one database would wipe and read each other's.
Loaded with ``-p`` (pyproject's ``addopts``) so that it runs before pytest-django reads the
settings: in worker ``gwN`` the database of ``REDIS_URL`` moves up by ``N + 1`` (``/0`` →
``/1``, ``/2``, …); subprocesses the tests start (the browser tests' server, the fault
suite's workers) inherit it. Outside xdist nothing changes.
"""

from __future__ import annotations

import os

#: Redis has 16 databases (0-15); tests/test_deploy_smoke.py takes 13 for its server.
LAST_DATABASE = 12


def worker_redis_url(url: str, worker: str) -> str:
    """``url`` with its database moved up for xdist worker ``worker`` (``gw0``, ``gw1``…)."""
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return url
    base, slash, database = url.rpartition("/")
    if not slash or base.endswith("/") or not (database or "0").isdigit():
        raise SystemExit(f"xdist: REDIS_URL must end in a database number (/0), got {url!r}")
    moved = int(database or "0") + int(worker[2:]) + 1
    if moved > LAST_DATABASE:
        raise SystemExit(
            f"xdist: worker {worker} would use Redis database {moved} (over {LAST_DATABASE}): "
            "start fewer workers or a REDIS_URL with a lower database number"
        )
    return f"{base}/{moved}"


_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker:
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("xdist: set REDIS_URL (scripts/test.sh does) so each worker gets its own")
    os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], _worker)
