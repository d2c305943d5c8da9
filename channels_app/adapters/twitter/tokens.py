"""X OAuth 2.0 user tokens: refreshed before they expire and when X answers 401.

X's OAuth 2.0 user access tokens (Authorization Code Flow with PKCE) live about two hours.
With the ``offline.access`` scope X also issues a refresh token, exchanged at
``POST {X_API_BASE}/2/oauth2/token`` (form body ``grant_type=refresh_token``,
``refresh_token``, ``client_id``; a confidential client adds HTTP Basic
``client_id:client_secret``) for a new pair: ``{"token_type": "bearer", "expires_in": 7200,
"access_token": …, "scope": …, "refresh_token": …}``. Refresh tokens are **single use**:
the answer carries a new one and the old one is spent, so two workers refreshing with
the same token make one of them fail, and a pair X issued but we did not store is lost.

Hence the rules here:

- one refresh at a time per account: a PostgreSQL session-level advisory lock
  (``x-token-refresh:<account id>``), taken in a short transaction (bounded wait:
  ``lock_timeout``) and held **outside** any transaction while X is called, so no
  database transaction is open during the HTTP call;
- after acquiring it the account is read again: when another worker refreshed meanwhile,
  its token is used and X is not called;
- the new pair is written in one short transaction (``select_for_update``), encrypted like
  every channel secret, unless the credentials were replaced meanwhile (admin, command);
- a refusal by X (400 ``invalid_request``/``invalid_grant``: revoked, spent or expired
  refresh token; 401 ``unauthorized_client``: wrong client credentials) is a
  ``PermanentError`` that names the account and the fix, kept on the account
  (``auth_error``, shown in the admin) and on the delivery; never retried in a loop.

Secrets never reach a log line or an error message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from channels_app.adapters.base import http_timeout
from channels_app.models import ChannelAccount
from support.db import advisory_session_locks_release
from support.errors import PermanentError, RetryableError
from support.models import AttemptOutcome
from support.outbound import (
    AnswerTooLarge,
    classify_http_status,
    response_read_bounded,
    retry_after_from_headers,
)

logger = logging.getLogger(__name__)

#: The scopes an X account needs here: read and send DMs, upload a reply's images, and a
#: refresh token.
SCOPES = "dm.read dm.write tweet.read users.read media.write offline.access"
#: The scope X needs to take a reply's images (``POST /2/media/upload``).
MEDIA_SCOPE = "media.write"
#: Where an account keeps the scopes X granted its token (``settings``), as X returned them
#: with the last token (``scope``, space-separated); missing: unknown.
SCOPES_SETTING = "granted_scopes"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
REFRESH_REFUSED = "x_refresh_refused"
UNAUTHORIZED = "x_unauthorized"
#: The most of a token answer read (a few hundred bytes of JSON).
TOKEN_ANSWER_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str  # "" when X did not return a new one (the stored one is kept)
    expires_at: datetime | None
    scope: str = ""


def api_base() -> str:
    return str(getattr(settings, "X_API_BASE", "https://api.x.com")).rstrip("/")


def token_url() -> str:
    return f"{api_base()}/2/oauth2/token"


def refresh_margin() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "X_TOKEN_REFRESH_MARGIN_SECONDS", 300)))


def refreshable(account: ChannelAccount) -> bool:
    """Whether the account can get a new access token by itself."""
    return bool(account.refresh_token and account.client_id)


def expiring(account: ChannelAccount, now: datetime | None = None) -> bool:
    """The access token is missing, or expires within the margin (unknown expiry: no)."""
    if not account.access_token:
        return True
    expires = account.access_token_expires_at
    return expires is not None and expires <= (now or timezone.now()) + refresh_margin()


def fix_hint(account: ChannelAccount) -> str:
    return (
        f"Authorise the X app again for this account (OAuth 2.0 scopes: {SCOPES}) and set "
        f"the new tokens: manage.py channel_account_create --channel twitter --name "
        f'"{account.name}" --access-token … --refresh-token … --token-expires-in 7200 '
        "(and --client-id, plus --client-secret for a confidential client), or in the "
        "admin (Channels → Channel accounts)."
    )


def granted_scopes(account: ChannelAccount) -> frozenset[str] | None:
    """The scopes X granted the account's token, None when not known (a token issued
    before they were kept, and not refreshed since)."""
    value = (account.settings or {}).get(SCOPES_SETTING)
    if not isinstance(value, str) or not value.strip():
        return None
    return frozenset(value.split())


def account_label(account: ChannelAccount) -> str:
    return f'X account "{account.name}" (channel account {account.pk})'


def access_token_for_send(account: ChannelAccount) -> str:
    """The access token to send with, refreshed first when it expires within
    ``X_TOKEN_REFRESH_MARGIN_SECONDS`` (or is missing) and the account can refresh."""
    if refreshable(account) and expiring(account):
        return access_token_refresh(account)
    return account.access_token


def access_token_refresh(account: ChannelAccount, *, rejected: str | None = None) -> str:
    """Refresh the account's access token (one refresh at a time per account) and return
    the token to use; ``account`` is updated in place.

    ``rejected``: the access token X has just refused with 401; without it the refresh
    is the proactive one (the token expires within the margin). Either way, when another
    worker refreshed while this one waited for the lock, its token is used as it is.
    Raises ``RetryableError`` (timeouts, 5xx, 429, lock wait) or ``PermanentError``.
    """
    with refresh_lock(account.pk, wait_seconds=http_timeout() * 2):
        current = ChannelAccount.objects.filter(pk=account.pk).first()
        if current is None:
            raise PermanentError(f"Channel account {account.pk} was deleted.")
        refreshed_meanwhile = (
            current.access_token != rejected if rejected is not None else not expiring(current)
        )
        if current.access_token and refreshed_meanwhile:
            _adopt(account, current)
            return current.access_token
        if not refreshable(current):
            raise _no_refresh_token(current)
        pair = _token_request(current)
        _pair_store(current, pair)
        _adopt(account, current)
        logger.info(
            "Refreshed the X access token of %s; it expires at %s",
            account_label(current),
            pair.expires_at.isoformat() if pair.expires_at else "an unknown time",
        )
        return current.access_token


@contextmanager
def refresh_lock(account_id: int, *, wait_seconds: float) -> Iterator[None]:
    """Hold the account's refresh lock (a PostgreSQL session-level advisory lock).

    It is taken in a short transaction so that ``lock_timeout`` bounds the wait (a
    waiter gives up with ``RetryableError``), then held with no transaction open, so the
    HTTP call to X runs outside any transaction. A process that dies loses its session
    and with it the lock.
    """
    key = f"x-token-refresh:{account_id}"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{int(wait_seconds * 1000)}ms"]
            )
            cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    except OperationalError as exc:
        if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        raise RetryableError(
            f"Another worker has been refreshing the X token of channel account {account_id} "
            f"for over {wait_seconds:.0f}s; trying again later."
        ) from exc
    try:
        yield
    finally:
        advisory_session_locks_release([key])  # a lost session has released it already


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def _adopt(account: ChannelAccount, current: ChannelAccount) -> None:
    for name in (
        "access_token",
        "refresh_token",
        "access_token_expires_at",
        "token_refreshed_at",
        "auth_error",
        "settings",
    ):
        setattr(account, name, getattr(current, name))


def _token_request(account: ChannelAccount) -> TokenPair:
    """One refresh at X's token endpoint (no transaction is open here)."""
    data = {
        "grant_type": "refresh_token",
        "refresh_token": account.refresh_token,
        "client_id": account.client_id,
    }
    auth = (account.client_id, account.client_secret) if account.client_secret else None
    try:
        response = requests.post(
            token_url(),
            data=data,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=http_timeout(),
            stream=True,
        )
        # a token answer is a few hundred bytes: read whole within the timeout, 64 KiB at most
        response_read_bounded(response, max_bytes=TOKEN_ANSWER_MAX_BYTES, seconds=http_timeout())
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise RetryableError(
            f"Refreshing the X token of {account_label(account)}: {type(exc).__name__}"
        ) from exc
    except AnswerTooLarge as exc:  # as an answer without a token is
        raise RetryableError(
            f"Refreshing the X token of {account_label(account)}: the answer is too large "
            f"({exc}; not read)."
        ) from exc
    outcome = classify_http_status(response.status_code)
    if outcome == AttemptOutcome.RETRYABLE:
        raise RetryableError(
            f"Refreshing the X token of {account_label(account)}: X answered HTTP "
            f"{response.status_code} {_oauth_error(response)}".rstrip(),
            retry_after=retry_after_from_headers(response.headers),  # or x-rate-limit-reset
            http_status=response.status_code,
        )
    if outcome == AttemptOutcome.PERMANENT:
        raise _refused(account, response)
    try:
        body = response.json()
        access = str(body["access_token"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RetryableError(
            f"Refreshing the X token of {account_label(account)}: the answer has no access_token."
        ) from exc
    if not access:
        raise RetryableError(
            f"Refreshing the X token of {account_label(account)}: empty access_token."
        )
    refresh = str(body.get("refresh_token") or "")
    scope = str(body.get("scope") or "")
    if not refresh:
        logger.warning(
            "X returned no new refresh token for %s (scope %r lacks offline.access?): the "
            "next refresh will fail",
            account_label(account),
            scope,
        )
    expires_at = None
    with suppress(KeyError, TypeError, ValueError):  # no expiry given: unknown
        expires_at = timezone.now() + timedelta(seconds=int(body["expires_in"]))
    return TokenPair(access_token=access, refresh_token=refresh, expires_at=expires_at, scope=scope)


def _oauth_error(response: requests.Response) -> str:
    """X's ``error`` and ``error_description`` only (never the rest of the body)."""
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get(k, ""))[:200] for k in ("error", "error_description") if body.get(k)]
    return ": ".join(parts)


def _refused(account: ChannelAccount, response: requests.Response) -> PermanentError:
    detail = _oauth_error(response)
    if response.status_code == 401 or detail.startswith("unauthorized_client"):
        cause = (
            "the app's client credentials were refused: check the account's client id "
            "(and client secret for a confidential client, empty for a public one)"
        )
    else:
        cause = "the refresh token was revoked, already used or has expired"
    message = (
        f"{account_label(account)}: X refused to refresh the access token (HTTP "
        f"{response.status_code}{' ' + detail if detail else ''}): {cause}. "
        f"{fix_hint(account)}"
    )
    ChannelAccount.objects.filter(pk=account.pk).update(auth_error=message[:2000])
    account.auth_error = message[:2000]
    logger.warning("%s", message)
    return PermanentError(
        message, http_status=response.status_code, response_text=detail, error_code=REFRESH_REFUSED
    )


def _no_refresh_token(account: ChannelAccount) -> PermanentError:
    missing = "refresh token" if not account.refresh_token else "OAuth 2.0 client id"
    return PermanentError(
        f"{account_label(account)}: the access token expired or was refused and the "
        f"account has no {missing} to get a new one. {fix_hint(account)}",
        error_code=UNAUTHORIZED,
    )


def _pair_store(account: ChannelAccount, pair: TokenPair) -> None:
    """Write the new pair (encrypted by the fields) in one short transaction, unless
    the credentials were replaced while X was being asked; ``account`` gets the pair."""
    used = account.refresh_token
    now = timezone.now()
    with transaction.atomic():
        row = ChannelAccount.objects.select_for_update().filter(pk=account.pk).first()
        if row is None:
            raise PermanentError(f"Channel account {account.pk} was deleted.")
        if row.refresh_token != used:
            logger.warning(
                "The credentials of %s were replaced during a refresh: keeping them",
                account_label(account),
            )
        else:
            row.access_token = pair.access_token
            row.refresh_token = pair.refresh_token or used
            row.access_token_expires_at = pair.expires_at
            row.token_refreshed_at = now
            row.auth_error = ""
            if pair.scope.strip():
                row.settings = {**(row.settings or {}), SCOPES_SETTING: pair.scope.strip()}
            row.save(
                update_fields=[
                    "access_token",
                    "refresh_token",
                    "access_token_expires_at",
                    "token_refreshed_at",
                    "auth_error",
                    "settings",
                    "updated_at",
                ]
            )
            account.settings = row.settings
    account.access_token = pair.access_token
    account.refresh_token = pair.refresh_token or used
    account.access_token_expires_at = pair.expires_at
    account.token_refreshed_at = now
    account.auth_error = ""


def tokens_configure(
    *,
    account: ChannelAccount,
    client_id: str | None = None,
    expires_at: datetime | None = None,
    expires_in: int | None = None,
    access_token_set: bool = False,
    credentials_set: bool = False,
    scope: str | None = None,
) -> ChannelAccount:
    """Set the non-secret OAuth 2.0 details of an account (its secrets go through
    ``channel_account_upsert``): the client id and the access token's expiry (absolute,
    or seconds from now like X's ``expires_in``). A new access token without an expiry
    has an unknown one (refreshed when X refuses it). New credentials or a new client id
    clear ``auth_error``. ``scope``: the scopes X granted a new access token (its
    ``scope``); a new access token without them has unknown scopes."""
    fields: list[str] = []
    if scope is not None or access_token_set:
        kept = {k: v for k, v in (account.settings or {}).items() if k != SCOPES_SETTING}
        if scope and scope.strip():
            kept[SCOPES_SETTING] = scope.strip()
        account.settings = kept
        fields.append("settings")
    if client_id is not None:
        account.client_id = client_id
        fields.append("client_id")
    if expires_in is not None:
        expires_at = timezone.now() + timedelta(seconds=expires_in)
    if expires_at is not None or access_token_set:
        account.access_token_expires_at = expires_at
        fields.append("access_token_expires_at")
    if credentials_set or client_id is not None:
        account.auth_error = ""
        fields.append("auth_error")
    if fields:
        account.save(update_fields=[*fields, "updated_at"])
    return account
