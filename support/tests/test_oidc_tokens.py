"""Cognito/OIDC with real RS256 tokens and a JWKS served over HTTP (support.testing.fake_idp):
the browser sign-in (mozilla-django-oidc's callback, driven end to end), the API bearer
path, and the shared verifier with its JWKS cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP, is_agent, is_supervisor
from support.auth.tokens import (
    JWKS_REFRESHED_KEY,
    KeysUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenKind,
    _url_key,
    token_verify,
)
from support.models import OidcIdentity
from support.testing.fake_idp import CLIENT_ID, ISSUER, FakeIdP, fake_idp, rsa_key

SUB = "5f1c2a9e-0000-4000-8000-000000000001"
FAILURE_URL = "/accounts/login/?sso=failed"


@pytest.fixture(scope="module")
def key_pair() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def idp(settings: Any, key_pair: rsa.RSAPrivateKey) -> Iterator[FakeIdP]:
    with fake_idp() as provider:
        provider.add_key("key-1", key_pair)
        for name, value in provider.settings().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "support.auth.oidc.GroupMappingOIDCBackend",
        ]
        settings.ROOT_URLCONF = "support.tests.oidc_urls"
        settings.LOGIN_REDIRECT_URL_FAILURE = FAILURE_URL
        yield provider


# --- the verifier ------------------------------------------------------------------------


def test_valid_id_token_verifies(idp: FakeIdP) -> None:
    claims = token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)
    assert (claims["sub"], claims["aud"], claims["iss"]) == (SUB, CLIENT_ID, ISSUER)


def test_expired_token_is_refused_beyond_the_leeway(idp: FakeIdP, settings: Any) -> None:
    settings.OIDC_CLOCK_LEEWAY_SECONDS = 30
    now = int(time.time())
    with pytest.raises(TokenExpired):
        token_verify(idp.sign(idp.id_claims(exp=now - 60, iat=now - 3660)), kind=TokenKind.ID)
    # Within the leeway (clocks differ a little) it is still accepted.
    token_verify(idp.sign(idp.id_claims(exp=now - 5, iat=now - 3605)), kind=TokenKind.ID)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-client"},
        {"aud": ["another-client"]},
        {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"},
        {"exp": None},
        {"token_use": "access"},
    ],
    ids=["wrong-aud", "wrong-aud-list", "wrong-iss", "no-exp", "id-path-access-use"],
)
def test_id_tokens_not_meant_for_us_are_refused(idp: FakeIdP, overrides: dict[str, Any]) -> None:
    with pytest.raises(TokenInvalid):
        token_verify(idp.sign(idp.id_claims(**overrides)), kind=TokenKind.ID)


def test_bad_signature_is_refused(idp: FakeIdP, other_key: rsa.RSAPrivateKey) -> None:
    forged = idp.sign(idp.id_claims(), kid="key-1", key=other_key)
    with pytest.raises(TokenInvalid, match="bad signature"):
        token_verify(forged, kind=TokenKind.ID)


def test_unsigned_and_hmac_tokens_are_refused(idp: FakeIdP) -> None:
    unsigned = jwt.encode(idp.id_claims(), "", algorithm="none", headers={"kid": "key-1"})
    # HS256 keyed with public material (the modulus): the algorithm-confusion forgery.
    modulus = idp.jwks()["keys"][0]["n"]
    hmac = jwt.encode(idp.id_claims(), modulus, algorithm="HS256", headers={"kid": "key-1"})
    for token in (unsigned, hmac, "not-a-jwt"):
        with pytest.raises(TokenInvalid):
            token_verify(token, kind=TokenKind.ID)


def test_cognito_access_token_is_accepted_by_client_id_on_the_bearer_path_only(
    idp: FakeIdP,
) -> None:
    token = idp.sign(idp.access_claims())
    assert token_verify(token, kind=TokenKind.BEARER)["client_id"] == CLIENT_ID
    with pytest.raises(TokenInvalid, match="audience"):
        token_verify(token, kind=TokenKind.ID)
    wrong_client = idp.sign(idp.access_claims(client_id="another-client"))
    with pytest.raises(TokenInvalid, match="audience"):
        token_verify(wrong_client, kind=TokenKind.BEARER)


def test_jwks_is_fetched_once_and_cached(idp: FakeIdP) -> None:
    for _ in range(3):
        token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)
    assert idp.hits["/.well-known/jwks.json"] == 1


def test_unknown_kid_refreshes_the_jwks_once_then_refuses(
    idp: FakeIdP, other_key: rsa.RSAPrivateKey
) -> None:
    token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)  # keys cached
    cache.delete(JWKS_REFRESHED_KEY.format(_url_key(idp.jwks_url)))  # the interval passed
    idp.add_key("key-2", other_key, publish=False)
    unknown = idp.sign(idp.id_claims(), kid="key-2")
    with pytest.raises(TokenInvalid, match="unknown signing key"):
        token_verify(unknown, kind=TokenKind.ID)
    assert idp.hits["/.well-known/jwks.json"] == 2
    # More made-up key ids within OIDC_JWKS_MIN_REFRESH_SECONDS: no more fetches.
    for _ in range(3):
        with pytest.raises(TokenInvalid):
            token_verify(unknown, kind=TokenKind.ID)
    assert idp.hits["/.well-known/jwks.json"] == 2


def test_rotated_key_is_found_by_one_refresh(idp: FakeIdP, other_key: rsa.RSAPrivateKey) -> None:
    token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)
    cache.delete(JWKS_REFRESHED_KEY.format(_url_key(idp.jwks_url)))
    idp.add_key("key-2", other_key)  # the provider rotates: the new key is published
    claims = token_verify(idp.sign(idp.id_claims(), kid="key-2"), kind=TokenKind.ID)
    assert claims["sub"] == SUB
    assert idp.hits["/.well-known/jwks.json"] == 2


def test_unreachable_jwks_is_not_a_verdict_on_the_token(idp: FakeIdP) -> None:
    idp.jwks_status = 503
    with pytest.raises(KeysUnavailable):
        token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)


def test_an_over_large_jwks_answer_is_refused_not_read_whole(idp: FakeIdP) -> None:
    """A key set is a few KB: an answer past JWKS_MAX_BYTES (256 KiB) is refused like one
    that is not a key set (no keys, no verdict on the token), never read whole."""
    idp.jwks_padding = 300 * 1024
    with pytest.raises(KeysUnavailable, match="too large"):
        token_verify(idp.sign(idp.id_claims()), kind=TokenKind.ID)


# --- browser sign-in: the callback, end to end ---------------------------------------------


def _sign_in(
    idp: FakeIdP,
    id_claims: dict[str, Any],
    *,
    key: rsa.RSAPrivateKey | None = None,
    userinfo: dict[str, Any] | None = None,
) -> Client:
    """Run mozilla-django-oidc's callback as the provider redirects the browser to it."""
    client = Client()
    session = client.session
    session["oidc_states"] = {
        "state-1": {"nonce": "nonce-1", "code_verifier": None, "added_on": time.time()}
    }
    session.save()
    idp.token_answer = {
        "id_token": idp.sign(id_claims, key=key),
        "access_token": idp.sign(idp.access_claims()),
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    # Like Cognito's userInfo: the profile, never the groups.
    idp.userinfo = userinfo or {"sub": id_claims.get("sub", SUB), "email": "kim@example.com"}
    client.response = client.get(  # type: ignore[attr-defined]
        reverse("oidc_authentication_callback"), {"code": "code-1", "state": "state-1"}
    )
    return client


def _signed_in_user(client: Client) -> Any:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


@pytest.mark.django_db
def test_sign_in_takes_supervisor_role_from_the_id_token(idp: FakeIdP) -> None:
    client = _sign_in(idp, idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Supervisors"]}))
    assert client.response.status_code == 302  # type: ignore[attr-defined]
    # LOGIN_REDIRECT_URL: the landing page, which sends supervisors to the dashboard.
    assert client.response["Location"] == "/start/"  # type: ignore[attr-defined]
    user = _signed_in_user(client)
    assert user is not None
    assert (user.email, user.first_name, user.is_staff) == ("kim@example.com", "Kim", True)
    assert is_supervisor(user)
    assert OidcIdentity.objects.get(issuer=ISSUER, subject=SUB).user == user
    assert idp.hits["/oauth2/token"] == 1


@pytest.mark.django_db
def test_sign_in_without_groups_gives_no_role(idp: FakeIdP, django_user_model: Any) -> None:
    # Kim was a supervisor; the provider no longer lists any group for her.
    kim = django_user_model.objects.create_user("kim", email="kim@example.com", is_staff=True)
    kim.groups.add(Group.objects.get_or_create(name=SUPERVISORS_GROUP)[0])
    client = _sign_in(idp, idp.id_claims(nonce="nonce-1"))
    user = _signed_in_user(client)
    assert user == kim
    assert not is_agent(user)
    assert not is_supervisor(user)
    assert set(user.groups.values_list("name", flat=True)) == set()
    assert user.is_staff is False


@pytest.mark.django_db
def test_groups_in_userinfo_are_not_believed(idp: FakeIdP) -> None:
    userinfo = {"sub": SUB, "email": "kim@example.com", "cognito:groups": ["Supervisors"]}
    client = _sign_in(idp, idp.id_claims(nonce="nonce-1"), userinfo=userinfo)
    user = _signed_in_user(client)
    assert user is not None
    assert not is_agent(user)


@pytest.mark.django_db
def test_unverified_email_never_signs_in_as_an_existing_account(
    idp: FakeIdP, supervisor: Any
) -> None:
    claims = idp.id_claims(nonce="nonce-1", email=supervisor.email, email_verified=False)
    userinfo = {"sub": SUB, "email": supervisor.email, "email_verified": "false"}
    client = _sign_in(idp, claims, userinfo=userinfo)
    assert client.response["Location"] == FAILURE_URL  # type: ignore[attr-defined]
    assert _signed_in_user(client) is None
    assert not OidcIdentity.objects.exists()
    # Nor as a bearer token carrying that email.
    bearer = idp.sign(idp.id_claims(email=supervisor.email, email_verified=False))
    assert _api(bearer).get(reverse("api-tickets")).status_code == 401


OTHER_SUB = "5f1c2a9e-0000-4000-8000-000000000002"


@pytest.mark.django_db
def test_a_superusers_email_never_signs_in_as_the_superuser(
    idp: FakeIdP, django_user_model: Any
) -> None:
    """Anyone the provider lets hold that (verified) address signed in with every
    permission, whatever the provider's groups said."""
    root = django_user_model.objects.create_superuser(
        "root", email="kim@example.com", password="a-long-local-password-1"
    )
    client = _sign_in(idp, idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Agents"]}))
    assert client.response["Location"] == FAILURE_URL  # type: ignore[attr-defined]
    assert _signed_in_user(client) is None
    assert not OidcIdentity.objects.exists()
    assert list(get_user_model().objects.all()) == [root]  # no second account either
    # Nor as a bearer token carrying that email.
    bearer = idp.sign(idp.id_claims(**{"cognito:groups": ["Agents"]}))
    assert _api(bearer).get(reverse("api-tickets")).status_code == 401
    # Linked on purpose (in the admin), the subject signs in as it.
    OidcIdentity.objects.create(user=root, issuer=ISSUER, subject=SUB)
    linked = _sign_in(idp, idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Agents"]}))
    assert _signed_in_user(linked) == root


@pytest.mark.django_db
def test_a_second_subject_with_the_same_email_is_not_the_first_ones_account(
    idp: FakeIdP,
) -> None:
    first = _sign_in(idp, idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Agents"]}))
    kim = _signed_in_user(first)
    assert kim is not None
    claims = idp.id_claims(nonce="nonce-1", sub=OTHER_SUB, **{"cognito:groups": ["Agents"]})
    other = _sign_in(idp, claims, userinfo={"sub": OTHER_SUB, "email": "kim@example.com"})
    assert other.response["Location"] == FAILURE_URL  # type: ignore[attr-defined]
    assert _signed_in_user(other) is None
    assert list(OidcIdentity.objects.values_list("subject", "user")) == [(SUB, kim.pk)]
    bearer = idp.sign(idp.id_claims(sub=OTHER_SUB, **{"cognito:groups": ["Agents"]}))
    assert _api(bearer).get(reverse("api-tickets")).status_code == 401


@pytest.mark.django_db
def test_signed_in_subject_keeps_its_account_when_its_email_changes(idp: FakeIdP) -> None:
    first = _sign_in(idp, idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Agents"]}))
    user = _signed_in_user(first)
    claims = idp.id_claims(nonce="nonce-1", email="kim.lee@example.com")
    again = _sign_in(idp, claims, userinfo={"sub": SUB, "email": "kim.lee@example.com"})
    assert _signed_in_user(again) == user
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        {"aud": "another-client"},
        {"iss": "https://idp.example.com"},
        {"nonce": "another-nonce"},
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "wrong-nonce"],
)
def test_sign_in_with_a_refused_id_token_fails(idp: FakeIdP, overrides: dict[str, Any]) -> None:
    claims = idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Supervisors"]})
    client = _sign_in(idp, {**claims, **overrides})
    assert client.response["Location"] == FAILURE_URL  # type: ignore[attr-defined]
    assert _signed_in_user(client) is None
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_sign_in_with_a_forged_id_token_fails(idp: FakeIdP, other_key: rsa.RSAPrivateKey) -> None:
    claims = idp.id_claims(nonce="nonce-1", **{"cognito:groups": ["Supervisors"]})
    client = _sign_in(idp, claims, key=other_key)
    assert client.response["Location"] == FAILURE_URL  # type: ignore[attr-defined]
    assert _signed_in_user(client) is None


# --- API bearer tokens -----------------------------------------------------------------------


@pytest.fixture
def kim(django_user_model: Any) -> Any:
    """Kim signed in once in the browser: her subject is linked to her user."""
    user = django_user_model.objects.create_user("kim", email="kim@example.com")
    OidcIdentity.objects.create(user=user, issuer=ISSUER, subject=SUB)
    return user


def _api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.django_db
def test_bearer_access_token_with_supervisors_group_acts_as_supervisor(
    idp: FakeIdP, kim: Any
) -> None:
    client = _api(idp.sign(idp.access_claims(**{"cognito:groups": ["Supervisors"]})))
    assert client.get(reverse("api-tickets")).status_code == 200
    assert client.get(reverse("api-kb-feedback")).status_code == 200  # supervisors only


@pytest.mark.django_db
def test_bearer_roles_come_from_the_token(idp: FakeIdP, kim: Any) -> None:
    kim.groups.add(Group.objects.get_or_create(name=SUPERVISORS_GROUP)[0])
    agent = _api(idp.sign(idp.access_claims(**{"cognito:groups": [AGENTS_GROUP]})))
    assert agent.get(reverse("api-tickets")).status_code == 200
    assert agent.get(reverse("api-kb-feedback")).status_code == 403
    no_groups = _api(idp.sign(idp.access_claims()))
    assert no_groups.get(reverse("api-tickets")).status_code == 403


@pytest.mark.django_db
def test_bearer_roles_come_from_the_token_for_a_local_superuser_too(idp: FakeIdP, kim: Any) -> None:
    """The superuser flag of the local account gave a bearer token every role, whatever its
    groups: SSO could no longer take a role away from such an account."""
    kim.is_superuser = True
    kim.save(update_fields=["is_superuser"])
    agent = _api(idp.sign(idp.access_claims(**{"cognito:groups": [AGENTS_GROUP]})))
    assert agent.get(reverse("api-tickets")).status_code == 200
    assert agent.get(reverse("api-kb-feedback")).status_code == 403
    no_groups = _api(idp.sign(idp.access_claims()))
    assert no_groups.get(reverse("api-tickets")).status_code == 403
    supervisor = _api(idp.sign(idp.access_claims(**{"cognito:groups": [SUPERVISORS_GROUP]})))
    assert supervisor.get(reverse("api-kb-feedback")).status_code == 200


@pytest.mark.django_db
def test_bearer_id_token_finds_its_user_by_email(idp: FakeIdP, django_user_model: Any) -> None:
    django_user_model.objects.create_user("kim", email="kim@example.com")
    client = _api(idp.sign(idp.id_claims(**{"cognito:groups": ["Agents"]})))
    assert client.get(reverse("api-tickets")).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        {"client_id": "another-client"},
        {"aud": "another-client"},
        {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"},
    ],
    ids=["expired", "wrong-client-id", "wrong-aud", "wrong-iss"],
)
def test_bearer_refuses_tokens_not_meant_for_us(
    idp: FakeIdP, kim: Any, overrides: dict[str, Any]
) -> None:
    claims = idp.access_claims(**{"cognito:groups": ["Supervisors"]})
    response = _api(idp.sign({**claims, **overrides})).get(reverse("api-tickets"))
    assert response.status_code == 401


@pytest.mark.django_db
def test_bearer_refuses_bad_signature_and_unknown_kid(
    idp: FakeIdP, kim: Any, other_key: rsa.RSAPrivateKey
) -> None:
    claims = idp.access_claims(**{"cognito:groups": ["Supervisors"]})
    forged = idp.sign(claims, kid="key-1", key=other_key)
    assert _api(forged).get(reverse("api-tickets")).status_code == 401
    idp.add_key("key-9", other_key, publish=False)
    unknown_kid = idp.sign(claims, kid="key-9")
    assert _api(unknown_kid).get(reverse("api-tickets")).status_code == 401
    assert _api("not.a.jwt").get(reverse("api-tickets")).status_code == 401


@pytest.mark.django_db
def test_bearer_for_an_unknown_user_is_refused(idp: FakeIdP) -> None:
    token = idp.sign(idp.access_claims(**{"cognito:groups": ["Supervisors"]}))
    assert _api(token).get(reverse("api-tickets")).status_code == 401


@pytest.mark.django_db
def test_bearer_for_an_inactive_user_is_refused(idp: FakeIdP, kim: Any) -> None:
    kim.is_active = False
    kim.save()
    token = idp.sign(idp.access_claims(**{"cognito:groups": ["Supervisors"]}))
    assert _api(token).get(reverse("api-tickets")).status_code == 401


@pytest.mark.django_db
def test_bearer_answers_503_when_the_jwks_cannot_be_fetched(idp: FakeIdP, kim: Any) -> None:
    idp.jwks_status = 500
    token = idp.sign(idp.access_claims(**{"cognito:groups": ["Agents"]}))
    response = _api(token).get(reverse("api-tickets"))
    assert response.status_code == 503
    assert "identity provider" in response.json()["error"]["message"]
    # its own code, as docs/api.md lists it (was the catch-all "error")
    assert response.json()["error"]["code"] == "identity_provider_unavailable"
