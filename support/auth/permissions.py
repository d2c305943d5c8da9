from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from support.auth.roles import is_agent, is_supervisor


class IsAgent(BasePermission):
    """Default for the API: an authenticated member of Agents or Supervisors."""

    message = "You must be an agent or a supervisor."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_agent(request.user)


class IsSupervisor(BasePermission):
    message = "This action is for supervisors only."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_supervisor(request.user)
