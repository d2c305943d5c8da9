"""Reads of the shared infrastructure."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from support.models import OidcIdentity


def oidc_user_get(*, issuer: str, subject: str) -> Any | None:
    """The local user the provider's ``subject`` was linked to at a browser sign-in."""
    identity = (
        OidcIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    return identity.user if identity is not None else None


def user_by_email_get(*, email: str) -> Any | None:
    """The one user with this email (case-insensitive); None when none or several."""
    users = list(get_user_model().objects.filter(email__iexact=email)[:2])
    return users[0] if len(users) == 1 else None
