"""Shared pytest fixtures: users with roles, API clients, eager Celery, no network, and no
outside call inside a database transaction."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connections
from rest_framework.test import APIClient

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from support.testing import loop_teardown, network_guard

# pytester: a test runs pytest itself (support/tests/test_loop_teardown.py)
pytest_plugins = ["pytester"]

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    """Tests talk only to local services (PostgreSQL socket, Redis, loopback servers)."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        host = address[0]
        if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
            raise OSError(f"Network access to {host} is blocked in tests")
    return _real_connect(self, address)


def _test_group(nodeid: str) -> str:
    """The unit scripts/test.sh's workers take whole: the browser tests (one server and one
    Chromium, timings of their own), the fault suite (it stops and starts services), and
    otherwise a test file (a module's fixtures are built once)."""
    path = nodeid.split("::", 1)[0]
    if "/e2e/" in f"/{path}":
        return "e2e"
    if path.startswith("tests/faults/"):
        return "faults"
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (scripts/test.sh) hands out :func:`_test_group` units."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _test_group(nodeid)

    return GroupScheduling(config, log)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _install_network_guard() -> Iterator[None]:
    network_guard.install()
    yield
    network_guard.uninstall()


@pytest.fixture(autouse=True, scope="session")
def _bounded_loop_teardown() -> Iterator[None]:
    """An async test's loop that cannot close fails its teardown naming the task
    (support/testing/loop_teardown.py) instead of hanging the run."""
    loop_teardown.install(lambda: os.environ.get("PYTEST_CURRENT_TEST", "(no test)"))
    yield
    loop_teardown.uninstall()


@pytest.fixture(autouse=True)
def _channel_layer_per_test() -> Iterator[None]:
    """Each test gets channel layers of its own.

    Channels keeps one layer object per alias for the process, and each async test runs in
    an event loop of its own; channels_redis keeps its receive state on that object (the
    lock held by whoever is reading the process's channel, the per-channel clean-up locks,
    messages read for other sockets). A test whose loop ended with a receive under way left
    a lock bound to that loop: the next test's socket failed with "Lock ... is bound to a
    different event loop" (seen in 1 of 2 runs of the socket tests under xdist). In
    production a process has one loop, for as long as it lives."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test database as its migrations leave it, also when ``--reuse-db`` keeps one a
    transactional test flushed on an earlier run (the flush empties every table, the rows
    data migrations wrote included): the seeded alarm rules are written again, by the
    migrations' own functions, when none is there."""
    with django_db_blocker.unblock():
        _seeded_alarm_rules_restore()


def _seeded_alarm_rules_restore() -> None:
    import importlib

    from django.apps import apps
    from django.db import connection
    from django.db.migrations import RunPython
    from django.db.migrations.loader import MigrationLoader

    from alerts.models import AlertRule

    if AlertRule.objects.filter(source__startswith="seed ").exists():
        return
    loader = MigrationLoader(None, ignore_no_migrations=True)
    names = sorted(name for app, name in loader.disk_migrations if app == "alerts")
    for name in names:
        module = importlib.import_module(f"alerts.migrations.{name}")
        for operation in module.Migration.operations:
            if isinstance(operation, RunPython):
                # The live registry stands in for the historical one: the same fields.
                with connection.schema_editor() as editor:
                    operation.code(apps, editor)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def network_guard_scope(
    request: pytest.FixtureRequest, _install_network_guard: None
) -> Iterator[network_guard.GuardScope]:
    """Fail any HTTP or boto3 call made while the code holds a transaction open.

    Also fails the test at teardown when product code swallowed the guard's error. A test
    whose code must (for now) call out in a transaction carries
    ``@pytest.mark.network_in_transaction_allowed(reason="...", only=("host", ...))``;
    ``only`` names the calls let through (substrings of "METHOD URL" or
    "service.Operation"), every other call stays guarded. Tests of the guard itself clear
    ``violations`` after checking them.
    """
    marker = request.node.get_closest_marker("network_in_transaction_allowed")
    only: tuple[str, ...] | None = None
    if marker is not None:
        if not marker.kwargs.get("reason"):
            raise pytest.UsageError("network_in_transaction_allowed needs reason='...'")
        if marker.kwargs.get("only") is not None:
            only = tuple(marker.kwargs["only"])
    with network_guard.guard_scope(allowed=marker is not None, allowed_only=only) as scope:
        yield scope
    if scope.violations:
        pytest.fail("\n".join(scope.violations), pytrace=False)


@pytest.fixture(autouse=True)
def _health_report_fresh() -> None:
    """``/health`` keeps its counts for a few seconds per process
    (``support.health._recent``): each test reads them afresh."""
    from support import health

    health._report_cache.clear()


@pytest.fixture(autouse=True)
def _celery_eager(settings: Any) -> None:
    from celery._state import _set_task_join_will_block  # type: ignore[attr-defined]  # not in the stubs

    from support.celery import app

    # The test process is no worker: a worker started in it by an earlier test
    # (support/tests/test_health.py, celery.contrib.testing) can leave Celery's "a join
    # would block" flag set, and every later ``apply().get()`` then raises.
    _set_task_join_will_block(False)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    from django.core.cache import cache

    from knowledge.retrieval import name_stats_forget
    from support.request_metrics import minute_counts_flush
    from tickets.context.cache import local_cache
    from tickets.sla import sla_policies_forget

    sla_policies_forget()  # SLA policies are cached per process (tickets.sla)
    yield
    sla_policies_forget()
    # This process's request tally reaches Redis from a background thread a few seconds
    # late: added now, and cleared with the cache, not during the next test.
    minute_counts_flush()
    cache.clear()
    local_cache.clear()  # the customer context's in-process LRU
    # The knowledge base's title statistics are cached per process and keyed by a version
    # kept in the cache just cleared: forget them too, or the next test's search would use
    # the statistics of rows its database never had (and run queries it would not run).
    name_stats_forget()


@pytest.fixture(autouse=True)
def _fresh_aws_clients() -> Iterator[None]:
    """support.aws caches boto3 clients per process: none outlives a test (moto, Stubber
    and credentials in the environment differ between tests)."""
    from support.aws import aws_clients_clear

    aws_clients_clear()
    yield
    aws_clients_clear()


def _user(django_user_model: Any, username: str, group: str | None, **extra: Any) -> Any:
    user = django_user_model.objects.create_user(
        username=username, password="pw-for-tests-1", email=f"{username}@example.com", **extra
    )
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def agent(django_user_model: Any) -> Any:
    return _user(django_user_model, "agent", AGENTS_GROUP)


@pytest.fixture
def other_agent(django_user_model: Any) -> Any:
    return _user(django_user_model, "other-agent", AGENTS_GROUP)


@pytest.fixture
def supervisor(django_user_model: Any) -> Any:
    return _user(django_user_model, "supervisor", SUPERVISORS_GROUP, is_staff=True)


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    """Signed in, but neither an agent nor a supervisor."""
    return _user(django_user_model, "outsider", None)


@pytest.fixture
def other_session() -> Iterator[Any]:
    """A second database session: another worker or a command, holding locks."""
    other = connections.create_connection("default")
    yield other
    other.close()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def agent_client(agent: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(agent)
    return client


@pytest.fixture
def supervisor_client(supervisor: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(supervisor)
    return client


@pytest.fixture
def customer(db: Any) -> Any:
    from tickets.models import Customer

    return Customer.objects.create(name="Ada Lovelace", email="ada@example.com", phone="+441234")
