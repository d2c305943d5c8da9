from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def product(request: HttpRequest) -> dict[str, object]:
    return {
        "PRODUCT_NAME": "Support Desk",
        "OIDC_ENABLED": settings.OIDC_ENABLED,
        "ENVIRONMENT": settings.ENVIRONMENT,
    }
