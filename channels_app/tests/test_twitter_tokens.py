"""X OAuth 2.0 user tokens: an expired token is refreshed (before expiry and on 401), the
rotated pair is stored encrypted, one refresh at a time per account, a refused refresh
token is a permanent error that names the account and the fix, and no secret is logged.

Shapes from X's docs: ``POST /2/oauth2/token`` (form body ``grant_type=refresh_token``,
``refresh_token``, ``client_id``; HTTP Basic for a confidential client) answers
``{"token_type", "expires_in": 7200, "access_token", "scope", "refresh_token"}``; a
spent or revoked refresh token gets 400 ``invalid_request`` "Value passed for the token
was invalid."; a refused bearer token on the v2 API gets the problem document below.

Over ~500 lines on purpose: one refresh flow, tested from every side (expiry, 401,
concurrency, storage, logging) against the same recorded X answers.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import requests
import responses
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.utils import timezone
from responses import matchers

from channels_app.adapters.base import OutboundRequest, get_adapter
from channels_app.adapters.twitter import tokens
from channels_app.adapters.twitter.oauth1 import signature
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import make_account
from support.delivery.models import Attempt as DeliveryAttempt
from support.delivery.models import Delivery as OutboundDelivery
from support.errors import PermanentError, RetryableError
from tickets.models import Message, Ticket
from tickets.services import message_add

DM_URL = "https://api.x.com/2/dm_conversations/with/4337869213/messages"
TOKEN_URL = "https://api.x.com/2/oauth2/token"
SCOPE = "dm.read dm.write tweet.read users.read offline.access"
OLD_ACCESS = "old-access-Zm9vYmFy0001"
OLD_REFRESH = "old-refresh-cmVmcmVzaA0002"
NEW_ACCESS = "new-access-bmV3YWNjZXNz0003"
NEW_REFRESH = "new-refresh-bmV3cmVmcmVzaA0004"
CLIENT_ID = "rG9n6402A3dbUJKzXTNX4oWHJ"
CLIENT_SECRET = "client-secret-c2VjcmV0c2VjcmV00005"
SECRETS = (OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET)

UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
REVOKED = {
    "error": "invalid_request",
    "error_description": "Value passed for the token was invalid.",
}
SENT = {
    "data": {"dm_conversation_id": "3001969357-4337869213", "dm_event_id": "1700000000000000009"}
}
NEW_PAIR = {
    "token_type": "bearer",
    "expires_in": 7200,
    "access_token": NEW_ACCESS,
    "scope": SCOPE,
    "refresh_token": NEW_REFRESH,
}


def x_account(
    *, expires_in: float | None = None, client_secret: str = "", **settings: Any
) -> ChannelAccount:
    """An X account holding an OAuth 2.0 pair (``expires_in`` seconds left; None: unknown)."""
    account = make_account(
        "twitter",
        name="@acme_support",
        access_token=OLD_ACCESS,
        refresh_token=OLD_REFRESH,
        client_secret=client_secret,
    )
    account.client_id = CLIENT_ID
    account.access_token_expires_at = (
        None if expires_in is None else timezone.now() + timedelta(seconds=expires_in)
    )
    account.settings = {**account.settings, **settings}
    account.save()
    return account


def bearer(token: str) -> list[Any]:
    return [matchers.header_matcher({"Authorization": f"Bearer {token}"})]


def refresh_form(refresh_token: str = OLD_REFRESH) -> list[Any]:
    return [
        matchers.urlencoded_params_matcher(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        )
    ]


def outbound(text: str = "Sorry! Checking now.") -> OutboundRequest:
    return OutboundRequest(
        message_id=1, ticket_id=1, ticket_number="T-1", recipient_id="4337869213", text=text
    )


def raw_secrets(pk: int) -> dict[str, str]:
    columns = ("access_token", "refresh_token", "client_secret")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM channels_app_channelaccount WHERE id = %s",  # noqa: S608
            [pk],
        )
        row = cursor.fetchone()
    return dict(zip(columns, row, strict=True))


def called(index: int) -> tuple[str, str]:
    request = responses.calls[index].request
    return str(request.url), str(request.headers.get("Authorization", ""))


@pytest.fixture
def x_ticket(post_fixture: Any) -> tuple[ChannelAccount, Ticket]:
    account = x_account()
    post_fixture(account, "dm_message_create")
    return account, Ticket.objects.get()


def reply(ticket: Ticket, agent: Any, capture: Any, text: str = "Sorry! Checking now.") -> Message:
    with capture(execute=True):
        return message_add(ticket=ticket, body=text, author_user=agent)


# --- an expired token through a refresh to a sent reply ------------------------------------


@pytest.mark.django_db
@responses.activate
def test_a_reply_refused_with_401_refreshes_the_token_stores_the_new_pair_and_is_sent(
    x_ticket: tuple[ChannelAccount, Ticket], agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account, ticket = x_ticket
    responses.post(DM_URL, status=401, json=UNAUTHORIZED, match=bearer(OLD_ACCESS))
    responses.post(TOKEN_URL, json=NEW_PAIR, match=refresh_form())
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))
    before = timezone.now()

    message = reply(ticket, agent, django_capture_on_commit_callbacks)

    assert [called(i) for i in range(len(responses.calls))] == [
        (DM_URL, f"Bearer {OLD_ACCESS}"),
        (TOKEN_URL, ""),  # public client: client_id in the form, no Authorization
        (DM_URL, f"Bearer {NEW_ACCESS}"),
    ]
    assert json.loads(responses.calls[2].request.body or b"") == {"text": "Sorry! Checking now."}
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "1700000000000000009")
    delivery = OutboundDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("succeeded", 1, 201)
    assert list(DeliveryAttempt.objects.values_list("outcome", "http_status")) == [("success", 201)]
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token, stored.auth_error) == (
        NEW_ACCESS,
        NEW_REFRESH,
        "",
    )
    assert stored.access_token_expires_at is not None
    assert (
        before + timedelta(seconds=7200)
        <= stored.access_token_expires_at
        <= timezone.now() + timedelta(seconds=7200)
    )
    assert stored.token_refreshed_at is not None
    assert stored.token_refreshed_at >= before
    raw = raw_secrets(account.pk)
    for column, plain in (("access_token", NEW_ACCESS), ("refresh_token", NEW_REFRESH)):
        assert raw[column].startswith("fernet:")
        assert plain not in raw[column]


@pytest.mark.django_db
@responses.activate
def test_a_token_whose_stored_expiry_is_past_is_refreshed_before_the_send(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = x_account(expires_in=-60)
    post_fixture(account, "dm_message_create")
    responses.post(TOKEN_URL, json=NEW_PAIR, match=refresh_form())
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))

    message = reply(Ticket.objects.get(), agent, django_capture_on_commit_callbacks)

    assert [called(i) for i in range(len(responses.calls))] == [
        (TOKEN_URL, ""),
        (DM_URL, f"Bearer {NEW_ACCESS}"),
    ]
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)


@pytest.mark.django_db
@responses.activate
@pytest.mark.parametrize(("seconds_left", "refreshed"), [(60, True), (3600, False)])
def test_a_token_is_refreshed_within_the_margin_before_it_expires(
    settings: Any, seconds_left: int, refreshed: bool
) -> None:
    settings.X_TOKEN_REFRESH_MARGIN_SECONDS = 300
    account = x_account(expires_in=seconds_left)
    responses.post(TOKEN_URL, json=NEW_PAIR, match=refresh_form())
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))
    responses.post(DM_URL, status=201, json=SENT, match=bearer(OLD_ACCESS))

    result = get_adapter("twitter").send(account, outbound())

    expected = (
        [(TOKEN_URL, ""), (DM_URL, f"Bearer {NEW_ACCESS}")]
        if refreshed
        else [(DM_URL, f"Bearer {OLD_ACCESS}")]
    )
    assert [called(i) for i in range(len(responses.calls))] == expected
    assert (result.external_message_id, result.http_status) == ("1700000000000000009", 201)
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert stored.access_token == (NEW_ACCESS if refreshed else OLD_ACCESS)


@pytest.mark.django_db
@responses.activate
def test_a_confidential_client_authenticates_the_refresh_with_http_basic() -> None:
    account = x_account(expires_in=-1, client_secret=CLIENT_SECRET)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    responses.post(
        TOKEN_URL,
        json=NEW_PAIR,
        match=[*refresh_form(), matchers.header_matcher({"Authorization": f"Basic {basic}"})],
    )
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))

    get_adapter("twitter").send(account, outbound())

    form = parse_qs(str(responses.calls[0].request.body))
    assert "client_secret" not in form  # only in the Basic header
    assert ChannelAccount.objects.get(pk=account.pk).client_secret == CLIENT_SECRET


@pytest.mark.django_db
@responses.activate
def test_a_refresh_without_a_new_refresh_token_keeps_the_stored_one() -> None:
    account = x_account(expires_in=-1)
    responses.post(TOKEN_URL, json={k: v for k, v in NEW_PAIR.items() if k != "refresh_token"})
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))

    get_adapter("twitter").send(account, outbound())

    stored = ChannelAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, OLD_REFRESH)


# --- one refresh at a time per account -----------------------------------------------------


def advisory_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
@responses.activate
@pytest.mark.parametrize("trigger", ["expired", "401"])
def test_concurrent_refreshes_serialise_and_the_second_uses_the_stored_new_token(
    trigger: str,
) -> None:
    """Two workers (threads, each with its own database session) hold the same stale
    token; the one that gets the lock refreshes while the other waits on it, then the
    other reads the stored pair and sends with it: X sees one refresh request."""
    account = x_account(expires_in=-60 if trigger == "expired" else 3600)
    state = {"waiter_seen": False, "in_transaction": False}

    def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        state["in_transaction"] |= connection.in_atomic_block
        for _ in range(400):  # until the other worker is blocked on the lock (≤ 20 s)
            if advisory_waiters():
                state["waiter_seen"] = True
                break
            threading.Event().wait(0.05)
        return 200, {}, json.dumps(NEW_PAIR)

    def dm_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        state["in_transaction"] |= connection.in_atomic_block
        if request.headers["Authorization"] == f"Bearer {NEW_ACCESS}":
            return 201, {}, json.dumps(SENT)
        return 401, {}, json.dumps(UNAUTHORIZED)

    responses.add_callback(responses.POST, TOKEN_URL, callback=token_endpoint)
    responses.add_callback(responses.POST, DM_URL, callback=dm_endpoint)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def worker() -> None:
        try:
            mine = ChannelAccount.objects.get(pk=account.pk)  # both read the old pair
            barrier.wait(timeout=10)
            results.append(get_adapter("twitter").send(mine, outbound()).external_message_id)
        except Exception as exc:
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == ["1700000000000000009", "1700000000000000009"]
    token_calls = [c for c in responses.calls if c.request.url == TOKEN_URL]
    assert len(token_calls) == 1
    assert parse_qs(str(token_calls[0].request.body))["refresh_token"] == [OLD_REFRESH]
    assert state == {"waiter_seen": True, "in_transaction": False}
    sent_with = sorted(
        str(c.request.headers["Authorization"]) for c in responses.calls if c.request.url == DM_URL
    )
    refused = [f"Bearer {OLD_ACCESS}"] * 2 if trigger == "401" else []
    assert sent_with == [f"Bearer {NEW_ACCESS}"] * 2 + refused  # "new-…" sorts before "old-…"
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)


@pytest.mark.django_db(transaction=True)
def test_a_worker_waiting_too_long_for_the_refresh_lock_retries_later() -> None:
    account = x_account(expires_in=-1)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with tokens.refresh_lock(account.pk, wait_seconds=5):
                held.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=10)
        with (
            pytest.raises(RetryableError, match="Another worker"),
            tokens.refresh_lock(account.pk, wait_seconds=0.2),
        ):
            pass  # pragma: no cover
    finally:
        release.set()
        thread.join(timeout=30)
    with tokens.refresh_lock(account.pk, wait_seconds=5):  # released: free again
        pass


# --- a refused refresh token: permanent, named, no loop --------------------------------------


@pytest.mark.django_db
@responses.activate
def test_a_revoked_refresh_token_is_a_permanent_error_naming_the_account_and_the_fix(
    x_ticket: tuple[ChannelAccount, Ticket],
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    supervisor: Any,
    django_user_model: Any,
) -> None:
    account, ticket = x_ticket
    responses.post(DM_URL, status=401, json=UNAUTHORIZED, match=bearer(OLD_ACCESS))
    responses.post(TOKEN_URL, status=400, json=REVOKED, match=refresh_form())

    message = reply(ticket, agent, django_capture_on_commit_callbacks)

    assert [called(i)[0] for i in range(len(responses.calls))] == [DM_URL, TOKEN_URL]
    delivery = OutboundDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (
        "dead",
        1,
        "x_refresh_refused",
    )
    assert list(DeliveryAttempt.objects.values_list("outcome", "http_status")) == [
        ("permanent", 400)
    ]
    for text in (delivery.last_error, ChannelAccount.objects.get(pk=account.pk).auth_error):
        assert f'X account "@acme_support" (channel account {account.pk})' in text
        assert "Value passed for the token was invalid." in text
        assert "revoked, already used or has expired" in text
        assert "channel_account_create --channel twitter" in text
        assert "--refresh-token" in text
        assert "offline.access" in text
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == (
        "failed",
        "x_refresh_refused",
    )
    assert "@acme_support" in message.delivery_error
    # dead at once: nothing left to retry, and the sweep finds nothing due
    from support.delivery.services import deliveries_sweep

    assert deliveries_sweep(grace_seconds=0) == 0
    assert len(responses.calls) == 2

    # the admin shows the account's credentials as failing, with the reason
    django_user_model.objects.filter(pk=supervisor.pk).update(is_superuser=True)
    client = Client()
    client.force_login(supervisor)
    page = client.get(f"/admin/channels_app/channelaccount/{account.pk}/change/").content.decode()
    assert "Value passed for the token was invalid." in page
    listing = client.get("/admin/channels_app/channelaccount/").content.decode()
    assert 'alt="False"' in listing  # "Credentials OK" column
    for secret in SECRETS:
        assert secret not in page
        assert secret not in listing

    # new credentials from the command clear the error; the next reply is sent
    call_command(
        "channel_account_create",
        "--channel",
        "twitter",
        "--name",
        "@acme_support",
        "--access-token",
        "fresh-access",
        "--refresh-token",
        "fresh-refresh",
        "--token-expires-in",
        "7200",
        stdout=io.StringIO(),
    )
    assert ChannelAccount.objects.get(pk=account.pk).auth_error == ""
    responses.post(DM_URL, status=201, json=SENT, match=bearer("fresh-access"))
    second = reply(ticket, agent, django_capture_on_commit_callbacks, text="Found it.")
    second.refresh_from_db()
    assert second.delivery_status == "sent"
    assert len(responses.calls) == 3


@pytest.mark.django_db
@responses.activate
def test_a_refreshed_token_refused_again_is_permanent_after_one_retry() -> None:
    account = x_account()
    responses.post(DM_URL, status=401, json=UNAUTHORIZED)
    responses.post(TOKEN_URL, json=NEW_PAIR)

    with pytest.raises(PermanentError) as caught:
        get_adapter("twitter").send(account, outbound())

    assert [called(i) for i in range(len(responses.calls))] == [
        (DM_URL, f"Bearer {OLD_ACCESS}"),
        (TOKEN_URL, ""),
        (DM_URL, f"Bearer {NEW_ACCESS}"),
    ]
    assert getattr(caught.value, "http_status", None) == 401
    assert getattr(caught.value, "error_code", "") == "x_unauthorized"
    assert "it had just issued by a refresh" in str(caught.value)
    assert "@acme_support" in str(caught.value)


@pytest.mark.django_db
@responses.activate
def test_a_401_without_a_refresh_token_stays_a_permanent_error_without_a_refresh() -> None:
    account = make_account("twitter", name="@legacy", access_token=OLD_ACCESS)
    responses.post(DM_URL, status=401, json=UNAUTHORIZED)

    with pytest.raises(PermanentError) as caught:
        get_adapter("twitter").send(account, outbound())

    assert len(responses.calls) == 1
    assert getattr(caught.value, "http_status", None) == 401
    assert "no refresh token" in str(caught.value)
    assert "@legacy" in str(caught.value)


@pytest.mark.django_db
@responses.activate
def test_wrong_client_credentials_are_named_as_such() -> None:
    account = x_account(expires_in=-1, client_secret="wrong-secret")
    responses.post(
        TOKEN_URL,
        status=401,
        json={
            "error": "unauthorized_client",
            "error_description": "Missing valid authorization header",
        },
    )

    with pytest.raises(PermanentError, match="client credentials were refused"):
        get_adapter("twitter").send(account, outbound())

    assert len(responses.calls) == 1
    assert "client credentials" in ChannelAccount.objects.get(pk=account.pk).auth_error


@pytest.mark.django_db
@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503, "json": {"title": "Service Unavailable"}},
        {"status": 429, "json": {}, "headers": {"Retry-After": "30"}},
        {"body": requests.ConnectionError("reset")},
        # a token answer past 64 KiB: refused as one without a token, never read whole
        # (before, its new token was stored)
        {"json": {**NEW_PAIR, "padding": "x" * (100 * 1024)}},
    ],
)
def test_a_token_endpoint_outage_is_retryable_and_changes_nothing(answer: dict[str, Any]) -> None:
    account = x_account(expires_in=-1)
    responses.post(TOKEN_URL, **answer)

    with pytest.raises(RetryableError):
        get_adapter("twitter").send(account, outbound())

    assert [called(i)[0] for i in range(len(responses.calls))] == [TOKEN_URL]
    stored = ChannelAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token, stored.auth_error) == (
        OLD_ACCESS,
        OLD_REFRESH,
        "",
    )


# --- secrets never logged -------------------------------------------------------------------


@pytest.mark.django_db
@responses.activate
def test_no_token_or_client_secret_reaches_the_logs_or_the_delivery_records(
    post_fixture: Any,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = x_account(client_secret=CLIENT_SECRET)
    post_fixture(account, "dm_message_create")
    ticket = Ticket.objects.get()
    responses.post(DM_URL, status=401, json=UNAUTHORIZED, match=bearer(OLD_ACCESS))
    responses.post(TOKEN_URL, json=NEW_PAIR)
    responses.post(DM_URL, status=201, json=SENT, match=bearer(NEW_ACCESS))
    reply(ticket, agent, django_capture_on_commit_callbacks)
    # then X revokes the pair: the next reply is refused and cannot be refreshed
    responses.reset()
    responses.post(DM_URL, status=401, json=UNAUTHORIZED, match=bearer(NEW_ACCESS))
    responses.post(TOKEN_URL, status=400, json=REVOKED, match=refresh_form(NEW_REFRESH))
    reply(ticket, agent, django_capture_on_commit_callbacks, text="Second one")

    assert list(OutboundDelivery.objects.order_by("pk").values_list("status", flat=True)) == [
        "succeeded",
        "dead",
    ]
    assert "Refreshed the X access token" in caplog.text
    assert "X refused to refresh" in caplog.text
    recorded = [caplog.text]
    for delivery in OutboundDelivery.objects.all():
        recorded += [delivery.last_error]
    for attempt in DeliveryAttempt.objects.all():
        recorded += [attempt.error, attempt.response_summary, json.dumps(attempt.request_summary)]
    for message in Message.objects.all():
        recorded += [message.delivery_error]
    recorded += [ChannelAccount.objects.get(pk=account.pk).auth_error]
    for text in recorded:
        for secret in SECRETS:
            assert secret not in text


# --- OAuth 1.0a user context for sends (an option) -----------------------------------------


@pytest.mark.django_db
@responses.activate
def test_send_auth_oauth1_signs_the_dm_with_the_oauth1_user_context() -> None:
    account = make_account(
        "twitter", name="@oauth1", consumer_secret="cs", token_secret="ts", access_token=""
    )
    account.settings = {"send_auth": "oauth1", "consumer_key": "ck", "oauth_token": "tok"}
    account.save()
    responses.post(DM_URL, status=201, json=SENT)

    result = get_adapter("twitter").send(account, outbound())

    assert result.external_message_id == "1700000000000000009"
    header = str(responses.calls[0].request.headers["Authorization"])
    assert header.startswith("OAuth ")
    params = dict(
        (key, value.strip('"'))
        for key, _, value in (part.partition("=") for part in header[6:].split(", "))
    )
    assert (params["oauth_consumer_key"], params["oauth_token"]) == ("ck", "tok")
    signed = {k: unquote(v) for k, v in params.items() if k != "oauth_signature"}
    assert unquote(params["oauth_signature"]) == signature("POST", DM_URL, signed, "cs", "ts")


@pytest.mark.django_db
def test_send_auth_oauth1_without_its_credentials_is_permanent() -> None:
    account = make_account("twitter", name="@oauth1")
    account.settings = {"send_auth": "oauth1"}
    account.save()
    with pytest.raises(PermanentError, match="send_auth oauth1 needs"):
        get_adapter("twitter").send(account, outbound())


# --- setup: the command and the admin ----------------------------------------------------


@pytest.mark.django_db
def test_the_command_takes_the_refresh_token_client_and_expiry() -> None:
    before = timezone.now()
    call_command(
        "channel_account_create",
        "--channel",
        "twitter",
        "--name",
        "@acme",
        "--access-token",
        OLD_ACCESS,
        "--refresh-token",
        OLD_REFRESH,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--token-expires-in",
        "7200",
        stdout=io.StringIO(),
    )
    account = ChannelAccount.objects.get()
    assert (account.refresh_token, account.client_id, account.client_secret) == (
        OLD_REFRESH,
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert account.access_token_expires_at is not None
    assert account.access_token_expires_at >= before + timedelta(seconds=7200)
    raw = raw_secrets(account.pk)
    assert all(value.startswith("fernet:") for value in raw.values())
    call_command(
        "channel_account_create",
        "--channel",
        "twitter",
        "--name",
        "@acme",
        "--token-expires-at",
        "2030-01-02T03:04:05",
        stdout=io.StringIO(),
    )
    account.refresh_from_db()
    assert account.access_token_expires_at is not None
    assert account.access_token_expires_at.isoformat() == "2030-01-02T03:04:05+00:00"
    assert (account.refresh_token, account.client_id) == (OLD_REFRESH, CLIENT_ID)
    # the scopes X granted a pasted token (its answer's "scope"): without media.write the
    # compose-time check refuses files on this account
    call_command(
        "channel_account_create",
        "--channel",
        "twitter",
        "--name",
        "@acme",
        "--token-scope",
        SCOPE,
        stdout=io.StringIO(),
    )
    account.refresh_from_db()
    assert account.settings["granted_scopes"] == SCOPE


@pytest.mark.django_db
def test_the_admin_takes_the_refresh_token_write_only_and_new_credentials_clear_the_error(
    supervisor: Any, django_user_model: Any
) -> None:
    django_user_model.objects.filter(pk=supervisor.pk).update(is_superuser=True)
    account = x_account(client_secret=CLIENT_SECRET, expires_in=600)
    ChannelAccount.objects.filter(pk=account.pk).update(auth_error="X refused to refresh …")
    client = Client()
    client.force_login(supervisor)
    url = f"/admin/channels_app/channelaccount/{account.pk}/change/"
    page = client.get(url).content.decode()
    for secret in (OLD_ACCESS, OLD_REFRESH, CLIENT_SECRET):
        assert secret not in page
    assert CLIENT_ID in page
    assert "X refused to refresh" in page
    assert account.access_token_expires_at is not None
    expires = timezone.localtime(account.access_token_expires_at)
    form: dict[str, str] = {
        "channel": "twitter",
        "name": "@acme_support",
        "external_id": "3001969357",
        "settings": "{}",
        "is_active": "on",
        "client_id": CLIENT_ID,
        "access_token_expires_at_0": expires.strftime("%Y-%m-%d"),
        "access_token_expires_at_1": expires.strftime("%H:%M:%S"),
    }
    # empty secrets keep the stored ones and the error stays
    response = client.post(url, form)
    assert response.status_code == 302, response.content
    account.refresh_from_db()
    assert (account.refresh_token, account.client_secret, account.auth_error) == (
        OLD_REFRESH,
        CLIENT_SECRET,
        "X refused to refresh …",
    )
    assert account.access_token_expires_at is not None
    # a new pair without a new expiry: stored, error cleared, expiry unknown
    response = client.post(url, {**form, "access_token": "a2", "refresh_token": "r2"})
    assert response.status_code == 302, response.content
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token, account.auth_error) == ("a2", "r2", "")
    assert account.access_token_expires_at is None
