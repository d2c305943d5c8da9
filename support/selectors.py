"""Reads of the shared infrastructure."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from support.models import OidcIdentity, OutboxEvent


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


def oidc_email_match_refusal(*, user: Any, issuer: str, subject: str) -> str | None:
    """Why the provider's ``subject``, not linked to any user yet, may not take over
    ``user`` because their (verified) emails match; None when it may.

    A superuser is never taken by email: a provider account with that address (anyone the
    provider lets register one) would sign in with every permission. Nor is an account
    another subject of the same provider already signed in as: a second provider account
    with the same address is someone else. Link such identities in the admin instead
    (``OidcIdentity``)."""
    if user.is_superuser:
        return "a superuser's email (superusers sign in with their password)"
    if OidcIdentity.objects.filter(user=user, issuer=issuer).exclude(subject=subject).exists():
        return "an email already signed in as by another subject of this provider"
    return None


def outbox_failed_count() -> int:
    """Outbox events the relay gave up on (``failed_at``: ``OUTBOX_MAX_ATTEMPTS`` spent) and
    nobody re-drove yet, however old: ``/health``, the ``support_outbox_failed`` gauge and
    the dashboard's intake and delivery health. Counts the partial index
    ``outbox_failed_idx`` (the outbox keeps every delivered event for
    ``OUTBOX_RETENTION_DAYS``)."""
    return OutboxEvent.objects.filter(failed_at__isnull=False).count()
