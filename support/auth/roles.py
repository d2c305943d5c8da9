"""Agent and supervisor roles are Django groups."""

from __future__ import annotations

from typing import Any

AGENTS_GROUP = "Agents"
SUPERVISORS_GROUP = "Supervisors"


def _group_names(user: Any) -> set[str]:
    cached = getattr(user, "_support_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._support_group_names = cached
    return cached


def is_supervisor(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or SUPERVISORS_GROUP in _group_names(user))


def is_agent(user: Any) -> bool:
    """Supervisors can do everything agents can."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or _group_names(user) & {AGENTS_GROUP, SUPERVISORS_GROUP})
