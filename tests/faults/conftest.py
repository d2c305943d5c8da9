"""Fixtures of the fault suite: a private Redis (broker, cache, flags) that this process and
its worker subprocesses use, worker subprocesses, and a fake provider.

Every test here is marked ``faults`` (``pytest -m faults`` runs the suite alone) and uses a
transactional database: the worker subprocesses must see what the test commits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.faults.harness import (
    FakeProvider,
    PrivatePostgres,
    PrivateRedis,
    Worker,
    database_url,
    worker_env,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


def point_at_redis(settings: Any, url: str) -> None:
    """This process's cache, Redis client and Celery broker use ``url``; tasks are sent
    to the broker (not run eagerly) for the worker subprocesses to take."""
    from support.celery import app
    from support.redis_client import get_redis

    settings.REDIS_URL = url
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    settings.CACHES = caches
    use_broker(url)
    app.conf.task_always_eager = False
    get_redis.cache_clear()


def use_broker(url: str) -> None:
    """Send this process's tasks to the broker at ``url`` (a new connection pool)."""
    from support.celery import app

    celery: Any = app
    celery.conf.broker_url = url
    celery._pool = None
    celery.amqp._producer_pool = None


@pytest.fixture
def broker(settings: Any, transactional_db: Any) -> Iterator[PrivateRedis]:
    from support.celery import app
    from support.redis_client import get_redis

    private = PrivateRedis(f"{id(settings):x}")
    private.start()
    saved = (app.conf.broker_url, settings.REDIS_URL, settings.CACHES)
    point_at_redis(settings, private.url)
    yield private
    use_broker(saved[0])
    settings.REDIS_URL, settings.CACHES = saved[1:]
    get_redis.cache_clear()
    private.close()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def workers(broker: PrivateRedis, logs: Path) -> Iterator[Callable[..., Worker]]:
    """``workers(name, database=None, app="support", **settings)`` starts a worker subprocess
    (of Celery app ``app``) on the test database (or ``database``, a URL) and the private
    Redis; all stop at teardown, and their logs are printed (pytest shows them when the
    test failed)."""
    started: list[Worker] = []

    def start(
        name: str,
        *,
        database: str | None = None,
        concurrency: int = 2,
        wait: bool = True,
        app: str = "support",
        **overrides: Any,
    ) -> Worker:
        env = worker_env(
            database_url=database or database_url(connection.settings_dict),
            redis_url=broker.url,
            **overrides,
        )
        worker = Worker(name, env=env, log_dir=logs, concurrency=concurrency, app=app)
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:  # the test is over: no warm shutdown to wait for
        if worker.alive():
            worker.kill()
    for worker in started:
        print(f"--- worker {worker.name} (last lines) ---\n{worker.tail(80)}")


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider().start()
    yield fake
    fake.close()


@pytest.fixture
def postgres(transactional_db: Any) -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster with the test database's schema; while the test runs,
    this process's default database connection points at it (so the test may restart it
    without disturbing the rest of the suite)."""
    private = PrivatePostgres(f"{id(transactional_db):x}")
    private.start()
    private.schema_from(connection.settings_dict)
    saved = copy.deepcopy(connection.settings_dict)
    connection.close()
    options = {k: v for k, v in saved.get("OPTIONS", {}).items() if k != "host"}
    connection.settings_dict.update(private.settings, OPTIONS=options)
    try:
        yield private
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        private.close()
