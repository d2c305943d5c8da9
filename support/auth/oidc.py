"""OIDC sign-in (Cognito or any provider) mapping a groups claim to our roles.

Roles come from the **ID token** (``OIDC_GROUPS_CLAIM``, default ``cognito:groups``), after
:func:`support.auth.tokens.token_verify` proved it genuine (signature against the
provider's JWKS, issuer, audience, expiry, and the sign-in's nonce). Cognito puts
``cognito:groups`` in its ID and access tokens, never in the userinfo answer, which is only
used for the profile (email, names). A user whose token names none of our groups gets no
role: roles are synced onto the user at every sign-in, so a removed group is a removed role.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from support.auth.tokens import KeysUnavailable, TokenInvalid, TokenKind, token_verify
from support.selectors import oidc_email_match_refusal, oidc_user_get
from support.services import agent_access_changed, oidc_identity_link

logger = logging.getLogger(__name__)


def roles_from_claims(claims: dict[str, Any]) -> set[str]:
    raw = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.replace(",", " ").split()]
    if not isinstance(raw, list):
        return set()
    names = {str(item) for item in raw}
    roles: set[str] = set()
    if names & set(settings.OIDC_SUPERVISOR_GROUPS):
        roles.add(SUPERVISORS_GROUP)
    if names & set(settings.OIDC_AGENT_GROUPS):
        roles.add(AGENTS_GROUP)
    return roles


# Claims taken from the verified ID token, whatever the userinfo answer says.
_ID_TOKEN_CLAIMS = ("iss", "sub")


def email_unverified(claims: dict[str, Any]) -> bool:
    """The provider says this email is not verified (Cognito's ID token writes a boolean,
    its userInfo answer the string "false"). Such an address is never used to find an
    existing account: whoever can set an unverified email could otherwise take one over."""
    value = claims.get("email_verified")
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


class GroupMappingOIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        """A refused or unverifiable ID token fails the sign-in (back to the login page)."""
        try:
            return super().authenticate(request, **kwargs)
        except TokenInvalid as exc:
            logger.warning("OIDC sign-in refused: ID token %s", exc)
        except KeysUnavailable as exc:
            logger.error("OIDC sign-in failed: %s", exc)
        return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The ID token's claims: signature, issuer, audience, expiry and nonce checked."""
        if not isinstance(token, str) or not token:
            raise TokenInvalid("missing")
        payload = token_verify(token, kind=TokenKind.ID)
        if self.get_settings("OIDC_USE_NONCE", True) and kwargs.get("nonce") != payload.get(
            "nonce"
        ):
            raise TokenInvalid("nonce mismatch")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        """The profile from userinfo; subject, issuer and groups from the ID token."""
        info = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(info, dict):
            raise SuspiciousOperation("userinfo is not a JSON object")
        if "sub" in info and info["sub"] != payload["sub"]:
            # OIDC Core 5.3.2: userinfo must be about the ID token's subject.
            raise SuspiciousOperation("userinfo subject differs from the ID token's")
        claims = {**payload, **info}
        for name in _ID_TOKEN_CLAIMS:
            claims[name] = payload[name]
        claims.pop(settings.OIDC_GROUPS_CLAIM, None)
        if settings.OIDC_GROUPS_CLAIM in payload:
            claims[settings.OIDC_GROUPS_CLAIM] = payload[settings.OIDC_GROUPS_CLAIM]
        return claims

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        """The user this subject signed in as before, else the one with this (verified)
        email; an unverified email on a first sign-in refuses it, and so does the email of
        a user no provider account may take by email (a superuser, an account another
        subject of this provider signed in as: ``oidc_email_match_refusal``)."""
        if claims.get("iss") and claims.get("sub"):
            user = oidc_user_get(issuer=claims["iss"], subject=claims["sub"])
            if user is not None:
                return self.UserModel.objects.filter(pk=user.pk)
        if email_unverified(claims):
            raise SuspiciousOperation("first sign-in with an unverified email")
        users = super().filter_users_by_claims(claims)
        for user in users[:5]:
            refusal = oidc_email_match_refusal(
                user=user, issuer=claims.get("iss", ""), subject=claims.get("sub", "")
            )
            if refusal is not None:
                logger.warning("OIDC sign-in refused: first sign-in with %s", refusal)
                raise SuspiciousOperation(f"first sign-in with {refusal}")
        return users

    def get_or_create_user(self, access_token: str, id_token: str, payload: Any) -> Any:
        user = super().get_or_create_user(access_token, id_token, payload)
        if user is not None and payload:
            oidc_identity_link(user=user, issuer=payload["iss"], subject=payload["sub"])
        return user

    def _sync_groups(self, user: Any, claims: dict[str, Any]) -> Any:
        wanted = roles_from_claims(claims)
        roles = (AGENTS_GROUP, SUPERVISORS_GROUP)
        before = set(user.groups.filter(name__in=roles).values_list("name", flat=True))
        for name in roles:
            group, _ = Group.objects.get_or_create(name=name)
            if name in wanted:
                user.groups.add(group)
            else:
                user.groups.remove(group)
        user.is_staff = SUPERVISORS_GROUP in wanted
        user.save(update_fields=["is_staff"])
        user._support_group_names = None  # roles.py memo: read the new groups
        if before != wanted:  # the user's open workbench sockets re-check their access
            agent_access_changed(user_ids=[user.pk], reason="sso roles")
        return user

    def create_user(self, claims: dict[str, Any]) -> Any:
        user = super().create_user(claims)
        user.first_name = (claims.get("given_name") or "")[:150]
        user.last_name = (claims.get("family_name") or "")[:150]
        user.save(update_fields=["first_name", "last_name"])
        return self._sync_groups(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        return self._sync_groups(user, claims)
