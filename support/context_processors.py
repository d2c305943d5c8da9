from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from support.auth.roles import is_supervisor


def product(request: HttpRequest) -> dict[str, object]:
    return {
        "PRODUCT_NAME": "Support Desk",
        "OIDC_ENABLED": settings.OIDC_ENABLED,
        "ENVIRONMENT": settings.ENVIRONMENT,
        # Lazy: only pages that show the navigation ask (the role is cached on the user).
        "is_supervisor_nav": SimpleLazyObject(
            lambda: is_supervisor(getattr(request, "user", None))
        ),
    }
