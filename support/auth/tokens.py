"""Verifying the identity provider's JWTs against its published keys (JWKS).

One function, :func:`token_verify`, serves both ways in: the ID token of a browser sign-in
(support.auth.oidc) and an API bearer token (support.auth.authentication). It checks

- the signature, with ``OIDC_RP_SIGN_ALGO`` only (RS256; the token's own ``alg`` header is
  never trusted to pick it, so ``none`` and HMAC-with-the-public-key forgeries fail), using
  the key the token's ``kid`` names in the provider's JWKS;
- ``iss`` equal to ``OIDC_OP_ISSUER``;
- the audience: ``aud`` must name our client (``OIDC_RP_CLIENT_ID``). A Cognito access token
  has no ``aud`` but a ``client_id`` claim holding the app client id (AWS: "ID tokens have
  an aud claim that contains the app client ID. Access tokens have a client_id claim"),
  accepted on the bearer path only; Cognito's ``token_use`` must fit the path too;
- ``exp`` (required) and ``nbf``/``iat``, with ``OIDC_CLOCK_LEEWAY_SECONDS`` of leeway.

The JWKS is fetched over HTTPS with ``OIDC_TIMEOUT`` and kept in the project cache (Redis)
for ``OIDC_JWKS_CACHE_SECONDS``. A token naming a key id we do not have (the provider
rotated its keys) refreshes it, at most once per ``OIDC_JWKS_MIN_REFRESH_SECONDS``, so
made-up key ids cannot make us hammer the provider. When Redis is unreachable the keys are
fetched for each token instead. The fetch is an outside call: callers make it with no
database transaction open (DRF authentication and the OIDC callback run before any).
"""

from __future__ import annotations

import hashlib
import logging
from enum import StrEnum
from typing import Any

import jwt
import redis
import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from support.logging_context import outbound_headers
from support.safe_urls import is_http_url

logger = logging.getLogger(__name__)

JWKS_CACHE_KEY = "oidc:jwks:{}"
JWKS_REFRESHED_KEY = "oidc:jwks-refreshed:{}"
ASYMMETRIC_PREFIXES = ("RS", "PS", "ES")


class TokenKind(StrEnum):
    """Which way in a token came: what it may be."""

    ID = "id"  # the ID token of a browser sign-in: aud = our client id
    BEARER = "bearer"  # an API bearer token: a Cognito access token (client_id) or ID token


class TokenInvalid(Exception):
    """The token is not one we accept (signature, key, issuer, audience, expiry, shape)."""


class TokenExpired(TokenInvalid):
    """The token was valid but has expired."""


class KeysUnavailable(Exception):
    """The provider's JWKS could not be fetched: nothing can be verified right now."""


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except redis.RedisError as exc:
        logger.warning("OIDC key cache unavailable (Redis: %s); fetching the JWKS", exc)
        return None


def _cache_set(key: str, value: Any, timeout: int) -> None:
    try:
        cache.set(key, value, timeout)
    except redis.RedisError as exc:
        logger.warning("OIDC key cache unavailable (Redis: %s); JWKS not cached", exc)


def _may_refresh(url: str) -> bool:
    """True at most once per OIDC_JWKS_MIN_REFRESH_SECONDS (across processes)."""
    try:
        return bool(
            cache.add(
                JWKS_REFRESHED_KEY.format(_url_key(url)),
                1,
                int(settings.OIDC_JWKS_MIN_REFRESH_SECONDS),
            )
        )
    except redis.RedisError:
        return False  # without Redis every token fetched the keys already


#: The most of a JWKS answer read: a provider's key set is a few keys (with certificate
#: chains, tens of KB); a larger answer is refused like one that is not a key set.
JWKS_MAX_BYTES = 256 * 1024


def _jwks_fetch(url: str) -> list[dict[str, Any]]:
    # Imported here: support.outbound reaches DRF, whose settings import this module.
    from support.outbound import AnswerTooLarge, classify_http_status, response_read_bounded

    timeout = float(settings.OIDC_TIMEOUT)
    try:
        response = requests.get(
            url,
            timeout=timeout,
            headers=outbound_headers({"Accept": "application/json"}),
            stream=True,
        )
        # the whole answer within the timeout (a trickle held a sign-in), at most 256 KiB
        response_read_bounded(response, max_bytes=JWKS_MAX_BYTES, seconds=timeout)
    except AnswerTooLarge as exc:
        raise KeysUnavailable("JWKS answer is not a JSON key set (too large)") from exc
    except requests.RequestException as exc:
        raise KeysUnavailable(f"JWKS fetch failed: {exc.__class__.__name__}") from exc
    if response.status_code != 200:
        outcome = classify_http_status(response.status_code)
        raise KeysUnavailable(f"JWKS fetch answered {response.status_code} ({outcome})")
    try:
        keys = response.json()["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeysUnavailable("JWKS answer is not a JSON key set") from exc
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise KeysUnavailable("JWKS answer is not a JSON key set")
    return keys


def jwks_get(*, refresh: bool = False) -> list[dict[str, Any]]:
    """The provider's public keys, from the cache unless ``refresh`` (or not cached)."""
    url = settings.OIDC_OP_JWKS_ENDPOINT
    if not is_http_url(url):
        raise ImproperlyConfigured("OIDC_OP_JWKS_ENDPOINT must be an http(s) URL")
    url_key = _url_key(url)
    if not refresh:
        cached = _cache_get(JWKS_CACHE_KEY.format(url_key))
        if isinstance(cached, list):
            return cached
    keys = _jwks_fetch(url)
    _cache_set(JWKS_CACHE_KEY.format(url_key), keys, int(settings.OIDC_JWKS_CACHE_SECONDS))
    if not refresh:  # a fresh fetch counts as the refresh an unknown kid would trigger
        _may_refresh(url)
    return keys


def _find_key(keys: list[dict[str, Any]], kid: str, alg: str) -> dict[str, Any] | None:
    for jwk in keys:
        if jwk.get("kid") != kid:
            continue
        if jwk.get("alg", alg) != alg or jwk.get("use", "sig") != "sig":
            continue
        return jwk
    return None


def _signing_key(kid: str, alg: str) -> jwt.PyJWK:
    jwk = _find_key(jwks_get(), kid, alg)
    if jwk is None and _may_refresh(settings.OIDC_OP_JWKS_ENDPOINT):
        jwk = _find_key(jwks_get(refresh=True), kid, alg)
    if jwk is None:
        raise TokenInvalid("unknown signing key")
    try:
        return jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWTError as exc:
        raise TokenInvalid("unusable signing key") from exc


def _check_audience(claims: dict[str, Any], kind: TokenKind) -> None:
    client_id = settings.OIDC_RP_CLIENT_ID
    token_use = claims.get("token_use")  # Cognito only: "id" or "access"
    if "aud" in claims:
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or client_id not in audiences:
            raise TokenInvalid("wrong audience")
        # OIDC Core 3.1.3.7: with several audiences, azp must be us.
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise TokenInvalid("wrong authorized party")
        if token_use not in (None, "id"):
            raise TokenInvalid("wrong token_use")
        return
    if (
        kind is TokenKind.BEARER
        and claims.get("client_id") == client_id
        and token_use
        in (
            None,
            "access",
        )
    ):
        return
    raise TokenInvalid("wrong audience")


def token_verify(token: str, *, kind: TokenKind) -> dict[str, Any]:
    """The claims of ``token`` once it is proved genuine, current and meant for us.

    Raises :class:`TokenInvalid` (:class:`TokenExpired` for an expired one) for a token we
    refuse, :class:`KeysUnavailable` when the provider's keys cannot be fetched.
    """
    alg = settings.OIDC_RP_SIGN_ALGO
    if not alg.startswith(ASYMMETRIC_PREFIXES):
        raise ImproperlyConfigured("OIDC_RP_SIGN_ALGO must be an asymmetric one (RS256)")
    if not settings.OIDC_RP_CLIENT_ID or not settings.OIDC_OP_ISSUER:
        raise ImproperlyConfigured("OIDC_RP_CLIENT_ID and OIDC_OP_ISSUER must be set")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenInvalid("not a JWT") from exc
    if header.get("alg") != alg:
        raise TokenInvalid("unexpected algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid("no key id")
    key = _signing_key(kid, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            issuer=settings.OIDC_OP_ISSUER,
            leeway=int(settings.OIDC_CLOCK_LEEWAY_SECONDS),
            # The audience is checked below: Cognito access tokens name the client in
            # client_id, not aud.
            options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenInvalid("bad signature") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenInvalid("wrong issuer") from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"invalid ({exc.__class__.__name__})") from exc
    _check_audience(claims, kind)
    return claims
