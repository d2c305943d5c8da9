"""The suite-wide guard: no HTTP or AWS call while the code holds a transaction open."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
import requests
import responses
import urllib3
from asgiref.sync import sync_to_async
from botocore.stub import Stubber
from channels.db import database_sync_to_async
from django.db import connection, transaction
from moto import mock_aws

from support.testing.network_guard import GuardScope, NetworkInTransactionError

URL = "https://api.example.com/v1/things"


def _get() -> int:
    return requests.get(URL, timeout=5).status_code


def _expect_violation(scope: GuardScope, *fragments: str) -> None:
    """The guard recorded exactly one violation naming ``fragments``; then forget it."""
    assert len(scope.violations) == 1, scope.violations
    for fragment in fragments:
        assert fragment in scope.violations[0]
    scope.violations.clear()


@pytest.fixture
def mocked_http() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, URL, json={}, status=200)
        mock.add(responses.POST, URL, json={}, status=201)
        yield mock


def _stubbed_sqs() -> tuple[Any, Stubber]:
    client = boto3.client(
        "sqs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(client)
    return client, stubber


# --- requests -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_call_inside_atomic_fails_with_method_url_and_place(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    with (
        pytest.raises(NetworkInTransactionError) as caught,
        transaction.atomic(),
    ):
        requests.post(URL, json={"a": 1}, timeout=5)

    message = str(caught.value)
    assert f"POST {URL} (requests)" in message
    assert "database 'default'" in message
    assert "support/tests/test_network_guard.py:" in message  # where the block was opened
    assert "test_requests_call_inside_atomic_fails_with_method_url_and_place" in message
    assert len(mocked_http.calls) == 0  # the call never left
    _expect_violation(network_guard_scope, f"POST {URL}")


@pytest.mark.django_db
def test_requests_call_outside_atomic_passes_in_a_db_test(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    # pytest-django's wrapper transaction is open here; it is the test's, not the code's.
    assert connection.in_atomic_block
    assert _get() == 200
    assert network_guard_scope.violations == []


@pytest.mark.django_db(transaction=True)
def test_transactional_db_test_inside_fails_outside_passes(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    assert not connection.in_atomic_block
    assert _get() == 200
    with (
        pytest.raises(NetworkInTransactionError, match=r"GET https://api\.example\.com"),
        transaction.atomic(),
    ):
        _get()
    _expect_violation(network_guard_scope, "GET https://api.example.com")
    assert _get() == 200


@pytest.mark.django_db
def test_nested_savepoint_is_reported_as_nested(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    with (
        pytest.raises(NetworkInTransactionError, match=r"\(and 1 nested\)"),
        transaction.atomic(),
        transaction.atomic(),
    ):
        _get()
    network_guard_scope.violations.clear()


def test_requests_call_without_database_passes(mocked_http: Any) -> None:
    assert _get() == 200


# --- the violation is recorded even when the code swallows it -------------------------------


@pytest.mark.django_db
def test_swallowed_violation_is_recorded_for_teardown(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    with transaction.atomic(), contextlib.suppress(Exception):
        _get()  # swallowed, as a task boundary's catch-all would
    # conftest's fixture fails the test at teardown from this list.
    _expect_violation(network_guard_scope, "GET https://api.example.com")


# --- on_commit --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_call_in_on_commit_passes_with_capture_on_commit_callbacks(
    mocked_http: Any, django_capture_on_commit_callbacks: Any, network_guard_scope: GuardScope
) -> None:
    codes: list[int] = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        transaction.on_commit(lambda: codes.append(_get()))
    assert len(callbacks) == 1
    assert codes == [200]
    assert network_guard_scope.violations == []


@pytest.mark.django_db(transaction=True)
def test_call_in_on_commit_passes_after_a_real_commit(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    codes: list[int] = []
    with transaction.atomic():
        transaction.on_commit(lambda: codes.append(_get()))
        assert codes == []
    assert codes == [200]
    assert network_guard_scope.violations == []


# --- boto3: Stubber (before-call) and moto (before-send) ------------------------------------


@pytest.mark.django_db
def test_boto3_stubber_call_inside_atomic_fails_outside_passes(
    network_guard_scope: GuardScope,
) -> None:
    client, stubber = _stubbed_sqs()
    stubber.add_response("list_queues", {"QueueUrls": []}, {})
    with stubber:
        with (
            pytest.raises(NetworkInTransactionError, match=r"sqs\.ListQueues \(boto3\)"),
            transaction.atomic(),
        ):
            client.list_queues()
        _expect_violation(network_guard_scope, "sqs.ListQueues")
        # The stubbed answer was not consumed: the call never reached the stub.
        assert client.list_queues() == {"QueueUrls": []}
        stubber.assert_no_pending_responses()


@pytest.mark.django_db(transaction=True)
def test_boto3_moto_call_inside_atomic_fails_outside_passes(
    network_guard_scope: GuardScope,
) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="guarded")
        with (
            pytest.raises(NetworkInTransactionError, match=r"s3\.PutObject \(boto3\)"),
            transaction.atomic(),
        ):
            s3.put_object(Bucket="guarded", Key="k", Body=b"x")
        _expect_violation(network_guard_scope, "s3.PutObject")
        assert s3.list_objects_v2(Bucket="guarded").get("KeyCount") == 0
        s3.put_object(Bucket="guarded", Key="k", Body=b"x")
        assert s3.list_objects_v2(Bucket="guarded")["KeyCount"] == 1


# --- httpx ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_httpx_call_inside_atomic_fails(network_guard_scope: GuardScope) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        assert client.get(URL).status_code == 200
        with (
            pytest.raises(NetworkInTransactionError, match=r"GET .* \(httpx\)"),
            transaction.atomic(),
        ):
            client.get(URL)
    _expect_violation(network_guard_scope, "(httpx)")


# --- urllib3 used directly -------------------------------------------------------------------


@pytest.mark.django_db
def test_urllib3_call_inside_atomic_fails_before_connecting(
    network_guard_scope: GuardScope,
) -> None:
    with (
        urllib3.PoolManager() as pool,
        pytest.raises(NetworkInTransactionError, match=r"GET https://api\.example\.com:443/v1"),
        transaction.atomic(),
    ):
        pool.request("GET", URL)
    _expect_violation(network_guard_scope, "(urllib3)")


# --- other threads ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_call_on_a_worker_thread_while_the_test_thread_holds_a_transaction_fails(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    """Strands agents and asyncio.to_thread call out on another thread with a copied context:
    the transaction the caller keeps open while it waits still counts."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(contextvars.copy_context().run, _get).result() == 200
        with transaction.atomic():
            future = pool.submit(contextvars.copy_context().run, _get)
            with pytest.raises(NetworkInTransactionError):
                future.result()
    _expect_violation(network_guard_scope, "GET https://api.example.com")


@pytest.mark.django_db
def test_the_calling_threads_own_atomic_block_counts(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    """Each thread has its own connection: a block opened on the worker thread counts there."""

    def in_own_transaction() -> int:
        try:
            with transaction.atomic():
                return _get()
        finally:
            connection.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            in_own_transaction()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)  # no copied context: checked on its own
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], NetworkInTransactionError)
    assert "in_own_transaction" in str(errors[0])


@pytest.mark.django_db(transaction=True)
async def test_async_database_sync_to_async_inside_fails_outside_passes(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    def inside() -> int:
        with transaction.atomic():
            return _get()

    assert await database_sync_to_async(_get)() == 200
    assert await asyncio.to_thread(_get) == 200
    with pytest.raises(NetworkInTransactionError, match=r"GET https://api\.example\.com"):
        await database_sync_to_async(inside)()
    _expect_violation(network_guard_scope, "in inside")
    assert await sync_to_async(_get)() == 200


@pytest.mark.network_in_transaction_allowed(reason="tests the marker itself")
@pytest.mark.django_db
def test_marked_test_may_call_inside_atomic(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    with transaction.atomic():
        assert _get() == 200
    assert network_guard_scope.allowed
    assert network_guard_scope.violations == []


@pytest.mark.network_in_transaction_allowed(
    reason="tests the marker's only=", only=("api.example.com",)
)
@pytest.mark.django_db
def test_marker_with_only_lets_through_the_named_calls_and_guards_the_rest(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    client, stubber = _stubbed_sqs()
    with transaction.atomic():
        assert _get() == 200
        with stubber, pytest.raises(NetworkInTransactionError, match=r"sqs\.ListQueues"):
            client.list_queues()
    _expect_violation(network_guard_scope, "sqs.ListQueues")


@transaction.atomic
def _decorated_call() -> int:
    return _get()


@pytest.mark.django_db
def test_a_decorated_function_is_named_with_its_caller(
    mocked_http: Any, network_guard_scope: GuardScope
) -> None:
    with pytest.raises(NetworkInTransactionError) as caught:
        _decorated_call()
    assert (
        "@transaction.atomic on support.tests.test_network_guard._decorated_call, called from "
        "support/tests/test_network_guard.py:"
    ) in str(caught.value)
    assert "in test_a_decorated_function_is_named_with_its_caller" in str(caught.value)
    network_guard_scope.violations.clear()
