"""API authentication: API keys (``Authorization: Api-Key <key>`` or ``X-API-Key``) and,
when OIDC is configured, bearer JWTs verified against the provider's keys."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from support.auth.oidc import email_unverified, roles_from_claims
from support.auth.roles import INTEGRATION_MARK, TOKEN_ROLES_MARK, _group_names
from support.auth.tokens import (
    KeysUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenKind,
    token_verify,
)
from support.models import ApiKey, ApiKeyRole
from support.selectors import oidc_email_match_refusal, oidc_user_get, user_by_email_get
from support.services import (
    API_KEY_CACHE_SECONDS,
    hash_api_key,
    known_api_keys,
    unknown_api_keys,
)
from support.throttling import failures_from

logger = logging.getLogger(__name__)
_last_used_written: dict[int, float] = {}
LAST_USED_EVERY_SECONDS = 60.0


def _cached(key_hash: str, now: float) -> ApiKey | None:
    cached = known_api_keys.get(key_hash)
    return cached[1] if cached is not None and cached[0] > now else None


def _lookup(key_hash: str) -> ApiKey | None:
    """Keys are cached per process for a few seconds: no query on the hot path.

    Revocation through ``api_key_revoke`` clears this process's entry at once; other
    processes see it within ``API_KEY_CACHE_SECONDS``. Unknown keys are remembered too
    (a client retrying a stale key costs no query), in a cache of bounded size.
    """
    now = time.monotonic()
    cached = _cached(key_hash, now)
    if cached is not None:
        return cached
    missed = unknown_api_keys.peek(key_hash)  # not reordered: the oldest miss goes first
    if missed is not None and missed > now:
        return None
    key = ApiKey.objects.select_related("user").filter(key_hash=key_hash).first()
    if key is not None:
        _group_names(key.user)  # loads and memoises the user's roles once
        if key.role == ApiKeyRole.INTEGRATION:
            # This user object belongs to this key's cache entry only: an integration key
            # never acts with its user's roles (see support.auth.roles).
            setattr(key.user, INTEGRATION_MARK, True)
    if key is None:
        unknown_api_keys.put(key_hash, now + API_KEY_CACHE_SECONDS)
    else:
        unknown_api_keys.pop(key_hash)
        known_api_keys[key_hash] = (now + API_KEY_CACHE_SECONDS, key)
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>`` or ``X-API-Key``.

    Failed attempts are counted per client IP; after ``API_AUTH_FAILURE_LIMIT_PER_MINUTE``
    of them in a minute, further attempts with a key this process has not just seen
    succeed are answered 429 without a lookup (so guessing keys stays slow and cheap).
    """

    keyword = "Api-Key"

    def _raw_key(self, request: Request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.startswith(f"{self.keyword} "):
            return header[len(self.keyword) + 1 :].strip()
        return request.META.get("HTTP_X_API_KEY") or None

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = self._raw_key(request)
        if raw is None:
            return None
        key_hash = hash_api_key(raw)
        failures = failures_from(request, "auth-fail")
        if _cached(key_hash, time.monotonic()) is None:
            wait = failures.wait()
            if wait is not None:
                raise exceptions.Throttled(
                    wait=wait, detail="Too many failed authentications from this address."
                )
        key = _lookup(key_hash)
        now = timezone.now()
        problem = None
        if key is None:
            problem = "Invalid API key."
        elif key.revoked_at is not None:
            problem = "This API key has been revoked."
        elif key.expires_at is not None and key.expires_at <= now:
            problem = "This API key has expired."
        elif not key.user.is_active:
            problem = "The API key's user is inactive."
        if problem is not None or key is None:
            failures.hit()
            raise exceptions.AuthenticationFailed(problem)
        tick = time.monotonic()
        if tick - _last_used_written.get(key.pk, 0.0) > LAST_USED_EVERY_SECONDS:
            _last_used_written[key.pk] = tick
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class OIDCBearerAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <JWT>`` from the OIDC provider (Cognito), verified here.

    The token is checked by :func:`support.auth.tokens.token_verify`, as the browser
    sign-in's ID token is (signature against the provider's JWKS, issuer, audience or
    Cognito ``client_id``, expiry), with no call to the provider but the cached JWKS. Its
    user is the one its subject signed in as in the browser (a Cognito access token
    carries no email), else the one with the token's verified email. The request acts with the
    roles the token's groups claim gives, never more: a token without groups has none, also
    for a user who is a superuser locally.
    Refused tokens answer 401; an unreachable JWKS 503.
    """

    def authenticate(self, request: Request) -> tuple[Any, dict[str, Any]] | None:
        if not settings.OIDC_ENABLED:
            return None
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid bearer header.")
        try:
            claims = token_verify(header[1].decode("latin-1"), kind=TokenKind.BEARER)
        except TokenExpired as exc:
            raise exceptions.AuthenticationFailed("The token has expired.") from exc
        except TokenInvalid as exc:
            logger.info("Bearer token refused: %s", exc)
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        except KeysUnavailable as exc:
            logger.error("Bearer token not verifiable: %s", exc)
            raise IdentityProviderUnavailable() from exc
        user = oidc_user_get(issuer=claims["iss"], subject=claims["sub"])
        if user is None and isinstance(claims.get("email"), str) and not email_unverified(claims):
            user = user_by_email_get(email=claims["email"])
            if user is not None and oidc_email_match_refusal(
                user=user, issuer=claims["iss"], subject=claims["sub"]
            ):
                user = None
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(
                "No active user for this token (sign in to the workbench once first)."
            )
        # The token decides the roles (support.auth.roles reads this memo), and only the
        # token: a superuser's account acts with the token's groups like any other.
        user._support_group_names = roles_from_claims(claims)
        setattr(user, TOKEN_ROLES_MARK, True)
        return user, claims

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class IdentityProviderUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The identity provider's keys could not be fetched; try again shortly."
    default_code = "identity_provider_unavailable"
