"""Salesforce REST adapter: OAuth 2.0 (client credentials or JWT bearer) and sObject upsert
by External ID (``SALESFORCE_EXTERNAL_ID_FIELD``).

Failures map to two kinds: :class:`SalesforceRetryable` (timeouts, 5xx; throttled for
``REQUEST_LIMIT_EXCEEDED``; credentials refused for a 401 after one session refresh) and
:class:`SalesforcePermanent` (any other 4xx, 300 for an External ID matching several
records). The delivery engine records every attempt.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.cache import cache

from support.delivery.models import Outcome
from support.errors import PermanentError, RetryableError
from support.outbound import (
    AnswerTooLarge,
    outbound_headers,
    response_read_bounded,
    retry_after_from_headers,
)

TOKEN_CACHE_KEY = "calls:salesforce-token"  # noqa: S105 - a cache key
REQUEST_LIMIT_BACKOFF_SECONDS = 60.0
#: The most of an answer read: a token, an upsert's ``{"id", "success", "errors"}`` or an
#: error list are a few hundred bytes of JSON; a larger answer is refused (permanent: it
#: is not a passing fault), never read whole into memory.
ANSWER_MAX_BYTES = 64 * 1024


class SalesforceRetryable(RetryableError):
    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
        outcome: Outcome = Outcome.RETRYABLE,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.http_status = http_status
        self.code = code
        self.outcome = outcome


class SalesforcePermanent(PermanentError):
    def __init__(self, message: str, *, http_status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


def _error(response: requests.Response) -> tuple[str, str]:
    """Salesforce REST errors are ``[{"message", "errorCode", "fields"?}]``."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode", "")), str(body[0].get("message", ""))
    if isinstance(body, dict):
        return str(body.get("error", "")), str(body.get("error_description", body))
    return "", str(body)[:300]


def _too_large(exc: AnswerTooLarge) -> SalesforcePermanent:
    status = exc.response.status_code if exc.response is not None else None
    return SalesforcePermanent(
        f"Salesforce's answer was refused: {exc}.", http_status=status, code="answer_too_large"
    )


_pool = threading.local()


def _pooled_session() -> requests.Session:
    """This thread's session, kept between sends so its connection pool reuses the TLS
    connection to Salesforce (seed 002: "connection pooling for Salesforce"): one per
    thread (a session is not shared across threads) and per process (a forked worker
    makes its own; a connection is never shared across a fork)."""
    pid = os.getpid()
    if getattr(_pool, "pid", None) != pid:
        _pool.session, _pool.pid = requests.Session(), pid
    session: requests.Session = _pool.session
    return session


class SalesforceClient:
    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session or _pooled_session()
        self.timeout = settings.SALESFORCE_TIMEOUT

    def _read(self, response: requests.Response) -> None:
        """The answer read whole within the timeout (a trickle of bytes is a timeout) and
        up to ``ANSWER_MAX_BYTES``; read to its end, the connection goes back to the pool."""
        response_read_bounded(response, max_bytes=ANSWER_MAX_BYTES, seconds=float(self.timeout))

    # --- OAuth --------------------------------------------------------------------------
    def _token_request(self) -> dict[str, str]:
        url = f"{settings.SALESFORCE_LOGIN_URL.rstrip('/')}/services/oauth2/token"
        if settings.SALESFORCE_AUTH_FLOW == "jwt":
            import jwt

            with open(settings.SALESFORCE_PRIVATE_KEY_FILE, "rb") as handle:
                key = handle.read()
            assertion = jwt.encode(
                {
                    "iss": settings.SALESFORCE_CLIENT_ID,
                    "sub": settings.SALESFORCE_USERNAME,
                    "aud": settings.SALESFORCE_LOGIN_URL.rstrip("/"),
                    "exp": int(time.time()) + 180,
                },
                key,
                algorithm="RS256",
            )
            data = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            }
        else:
            data = {
                "grant_type": "client_credentials",
                "client_id": settings.SALESFORCE_CLIENT_ID,
                "client_secret": settings.SALESFORCE_CLIENT_SECRET,
            }
        try:
            response = self.session.post(
                url, data=data, headers=outbound_headers(), timeout=self.timeout, stream=True
            )
            self._read(response)
        except AnswerTooLarge as exc:
            raise _too_large(exc) from exc
        except requests.RequestException as exc:
            raise SalesforceRetryable(f"Salesforce token request failed: {exc}") from exc
        if response.status_code != 200:
            code, message = _error(response)
            kind = SalesforceRetryable if response.status_code >= 500 else SalesforcePermanent
            raise kind(
                f"Salesforce OAuth {response.status_code} {code}: {message}",
                http_status=response.status_code,
                code=code,
            )
        body = response.json()
        return {"access_token": body["access_token"], "instance_url": body["instance_url"]}

    def token(self, *, refresh: bool = False) -> dict[str, str]:
        if not refresh:
            cached = cache.get(TOKEN_CACHE_KEY)
            if cached:
                return dict(cached)
        token = self._token_request()
        cache.set(TOKEN_CACHE_KEY, token, timeout=settings.SALESFORCE_TOKEN_TTL)
        return token

    # --- REST ------------------------------------------------------------------------
    def upsert(
        self, sobject: str, external_field: str, external_value: str, fields: dict[str, Any]
    ) -> tuple[str, int]:
        """Create or update the record whose External ID field ``external_field`` is
        ``external_value`` (``PATCH /sobjects/<sobject>/<field>/<value>``): sending it twice
        (a retry after a timeout) updates one record instead of creating a second.
        Answers ``(record id, HTTP status)``: 201 created, 200 updated (API v46+), 204
        updated (older versions: no body, so no id). Refreshes the session once."""
        path = (
            f"sobjects/{sobject}/{quote(external_field, safe='')}/{quote(external_value, safe='')}"
        )
        for refreshed in (False, True):
            token = self.token(refresh=refreshed)
            url = (
                f"{token['instance_url'].rstrip('/')}/services/data/"
                f"{settings.SALESFORCE_API_VERSION}/{path}"
            )
            try:
                response = self.session.patch(
                    url,
                    json=fields,
                    headers=outbound_headers({"Authorization": f"Bearer {token['access_token']}"}),
                    timeout=self.timeout,
                    stream=True,
                )
                self._read(response)
            except AnswerTooLarge as exc:
                raise _too_large(exc) from exc
            except requests.RequestException as exc:
                raise SalesforceRetryable(f"Salesforce unreachable: {exc}") from exc
            status = response.status_code
            if status in (200, 201):
                return str(response.json().get("id", "")), status
            if status == 204:
                return "", status
            code, message = _error(response)
            if status == 401 and code == "INVALID_SESSION_ID" and not refreshed:
                continue
            detail = f"Salesforce {status} {code}: {message}"
            if code == "REQUEST_LIMIT_EXCEEDED":
                retry_after = retry_after_from_headers(response.headers)
                raise SalesforceRetryable(
                    detail,
                    http_status=status,
                    code=code,
                    retry_after=retry_after or REQUEST_LIMIT_BACKOFF_SECONDS,
                    outcome=Outcome.THROTTLED,
                )
            if status == 401:
                raise SalesforceRetryable(
                    detail, http_status=status, code=code, outcome=Outcome.AUTH
                )
            if status >= 500 or status in (408, 429):
                raise SalesforceRetryable(detail, http_status=status, code=code)
            # 300: the External ID matches several records (a data problem to fix by hand).
            raise SalesforcePermanent(detail, http_status=status, code=code)
        raise AssertionError("unreachable")  # pragma: no cover
