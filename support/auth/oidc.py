"""OIDC sign-in (Cognito or any provider) mapping a groups claim to our roles."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from support.services import agent_access_changed


def roles_from_claims(claims: dict[str, Any]) -> set[str]:
    raw = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.replace(",", " ").split()]
    names = {str(item) for item in raw}
    roles: set[str] = set()
    if names & set(settings.OIDC_SUPERVISOR_GROUPS):
        roles.add(SUPERVISORS_GROUP)
    if names & set(settings.OIDC_AGENT_GROUPS):
        roles.add(AGENTS_GROUP)
    return roles


class GroupMappingOIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
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
        if before != wanted:  # the user's open workbench sockets re-check their access
            agent_access_changed(user_ids=[user.pk], reason="sso roles")
        return user

    def create_user(self, claims: dict[str, Any]) -> Any:
        user = super().create_user(claims)
        user.first_name = claims.get("given_name", "")[:150]
        user.last_name = claims.get("family_name", "")[:150]
        user.save(update_fields=["first_name", "last_name"])
        return self._sync_groups(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        return self._sync_groups(user, claims)
