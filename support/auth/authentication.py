"""API authentication: API keys (``Authorization: Api-Key <key>`` or ``X-API-Key``) and,
when OIDC is configured, bearer tokens checked against the provider."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from support.models import ApiKey
from support.services import hash_api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
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
        try:
            key = ApiKey.objects.select_related("user").get(key_hash=hash_api_key(raw))
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        now = timezone.now()
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed("The API key's user is inactive.")
        if cache.add(f"apikey-used:{key.pk}", 1, timeout=60):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class OIDCBearerAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <access token>`` validated by the OIDC provider (Cognito)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        if not settings.OIDC_ENABLED:
            return None
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            return None
        from mozilla_django_oidc.contrib.drf import OIDCAuthentication

        return OIDCAuthentication().authenticate(request)  # type: ignore[no-any-return]

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
