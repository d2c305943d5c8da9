"""Each pytest-xdist worker gets a Redis database of its own (tests/xdist_redis.py): tests
flush the cache after each test, and two workers on one database would wipe each other's."""

from __future__ import annotations

import pytest

from conftest import _test_group
from tests.xdist_redis import LAST_DATABASE, worker_redis_url


def test_each_worker_moves_up_from_the_given_database() -> None:
    assert worker_redis_url("redis://127.0.0.1:6391/0", "gw0") == "redis://127.0.0.1:6391/1"
    assert worker_redis_url("redis://127.0.0.1:6391/0", "gw1") == "redis://127.0.0.1:6391/2"
    assert worker_redis_url("redis://127.0.0.1:6391/8", "gw3") == "redis://127.0.0.1:6391/12"


def test_outside_xdist_nothing_changes() -> None:
    assert worker_redis_url("redis://127.0.0.1:6391/0", "") == "redis://127.0.0.1:6391/0"
    assert worker_redis_url("redis://127.0.0.1:6391/0", "master") == "redis://127.0.0.1:6391/0"


@pytest.mark.parametrize(
    ("url", "worker"),
    [
        ("redis://127.0.0.1:6391", "gw0"),  # no database number
        ("redis://127.0.0.1:6391/x", "gw0"),
        (f"redis://127.0.0.1:6391/{LAST_DATABASE}", "gw0"),  # past the last one left free
    ],
)
def test_a_url_it_cannot_move_stops_the_run(url: str, worker: str) -> None:
    with pytest.raises(SystemExit, match="xdist"):
        worker_redis_url(url, worker)


def test_browser_and_fault_tests_are_one_unit_each_other_files_their_own() -> None:
    assert _test_group("tests/e2e/test_csp_e2e.py::test_x") == "e2e"
    assert _test_group("calls/tests/e2e/test_board_alert.py::test_y[a]") == "e2e"
    assert _test_group("tests/faults/test_worker_killed.py::test_z") == "faults"
    assert _test_group("knowledge/tests/test_stackfaq.py::test_a") == (
        "knowledge/tests/test_stackfaq.py"
    )
    assert _test_group("tests/test_deploy.py::TestX::test_b") == "tests/test_deploy.py"
