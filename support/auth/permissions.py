"""DRF permissions: agents and supervisors (people, or user API keys acting as them) and
integrations (API keys with the integration role, machine credentials)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from support.auth.roles import is_agent, is_supervisor
from support.models import ApiKey, ApiKeyRole


def is_integration_request(request: Request) -> bool:
    """Whether the request was authenticated by an API key with the integration role."""
    auth = getattr(request, "auth", None)
    return isinstance(auth, ApiKey) and auth.role == ApiKeyRole.INTEGRATION


class IsAgent(BasePermission):
    """Default for the API: an authenticated member of Agents or Supervisors.

    Integration keys are refused whatever their user's groups: they are machine
    credentials for integration endpoints only.
    """

    message = "You must be an agent or a supervisor."

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_integration_request(request):
            self.message = "Integration API keys are accepted only by integration endpoints."
            return False
        return is_agent(request.user)


class IsSupervisor(BasePermission):
    message = "This action is for supervisors only."

    def has_permission(self, request: Request, view: Any) -> bool:
        return not is_integration_request(request) and is_supervisor(request.user)


class IsIntegration(BasePermission):
    """Integration endpoints (e.g. ``POST /api/calls/events``): only an API key with the
    integration role; signed-in people and user keys are refused (403)."""

    message = "This endpoint takes an integration API key only."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_integration_request(request)
