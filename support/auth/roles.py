"""Agent and supervisor roles are Django groups."""

from __future__ import annotations

from typing import Any

AGENTS_GROUP = "Agents"
SUPERVISORS_GROUP = "Supervisors"
# Set on the user object an integration API key authenticates (support.auth.authentication):
# such a request has no role, whatever the user's groups, so views that check roles on
# ``request.user`` directly refuse it too.
INTEGRATION_MARK = "_support_via_integration_key"
# Set on the user object an OIDC bearer token authenticates (support.auth.authentication):
# the request acts with the roles the token's groups claim gives and nothing more, so the
# local account's superuser flag adds no role to it.
TOKEN_ROLES_MARK = "_support_roles_from_token"  # noqa: S105 - an attribute name


def _group_names(user: Any) -> set[str]:
    cached = getattr(user, "_support_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._support_group_names = cached
    return cached


def _is_person(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False)
        and user.is_active
        and not getattr(user, INTEGRATION_MARK, False)
    )


def _superuser(user: Any) -> bool:
    return bool(user.is_superuser) and not getattr(user, TOKEN_ROLES_MARK, False)


def is_supervisor(user: Any) -> bool:
    if not _is_person(user):
        return False
    return _superuser(user) or SUPERVISORS_GROUP in _group_names(user)


def is_agent(user: Any) -> bool:
    """Supervisors can do everything agents can."""
    if not _is_person(user):
        return False
    return _superuser(user) or bool(_group_names(user) & {AGENTS_GROUP, SUPERVISORS_GROUP})
