"""Shared infrastructure tables: API keys, OIDC identities, the transactional outbox, the
audit log, and the delivery status and attempt outcome choices (the delivery engine's own
tables live in ``support.delivery``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ApiKeyRole(models.TextChoices):
    """What a key may do.

    ``user`` keys act as their user, with that user's groups (Agents / Supervisors), on
    every agent endpoint. ``integration`` keys are machine credentials: accepted only by
    integration endpoints (``support.auth.permissions.IsIntegration``, e.g.
    ``POST /api/calls/events``) and refused (403) everywhere else, whatever their user's
    groups.
    """

    USER = "user", "User (acts as its user)"
    INTEGRATION = "integration", "Integration (machine credential, integration endpoints only)"


class ApiKey(models.Model):
    """A machine client's key. Only its SHA-256 hash is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text=(
            "A user key acts as this user, with this user's groups (Agents / Supervisors); "
            "an integration key only names its owner (a service account without groups is "
            "best)."
        ),
    )
    role = models.CharField(
        max_length=16,
        choices=ApiKeyRole.choices,
        default=ApiKeyRole.USER,
        help_text="Integration keys work only on integration endpoints (e.g. call events).",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the default API_RATE_LIMIT_PER_MINUTE."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_integration(self) -> bool:
        return self.role == ApiKeyRole.INTEGRATION


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes."""

    event_type = models.CharField(max_length=64, db_index=True)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"],
                name="outbox_pending_idx",
                condition=Q(delivered_at__isnull=True, failed_at__isnull=True),
            ),
            models.Index(fields=["aggregate_type", "aggregate_id"], name="outbox_aggregate_idx"),
            # The events the relay gave up on: counted by /health, /metrics and the
            # dashboard on every call, among every event kept OUTBOX_RETENTION_DAYS.
            models.Index(
                fields=["id"],
                name="outbox_failed_idx",
                condition=Q(failed_at__isnull=False),
            ),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_type} {self.aggregate_type}:{self.aggregate_id}"

    def envelope(self) -> dict[str, object]:
        """The event as clients receive it (seed 001's schema plus the event id)."""
        return {
            "id": self.pk,
            "event_type": self.event_type,
            "timestamp": self.created_at.isoformat().replace("+00:00", "Z"),
            **self.payload,
        }


class AuditLog(models.Model):
    """Who did what to which record, for data-protection and supervisor actions."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` on a create (``support.idempotency``): which object
    its first request created, so a retry with the same key answers with that object
    instead of creating another. Per user (an API key's user: all of that user's keys
    share them); the request's fingerprint tells a retry from another request reusing the
    key. Holds ids only (the answer is rebuilt from the object, under the visibility rule
    of the moment); deleted ``IDEMPOTENCY_KEY_RETENTION_HOURS`` after it was first used."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64)
    object_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.key[:32]}"


class OidcIdentity(models.Model):
    """Which local user an identity provider's subject (``iss`` + ``sub``) is.

    Recorded at each browser sign-in (support.auth.oidc). API bearer tokens find their user
    through it: a Cognito access token carries ``sub`` but no email. The subject is stable
    where an email address can change at the provider."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OIDC identity"
        verbose_name_plural = "OIDC identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="oidc_identity_issuer_subject_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    DEAD = "dead", "Dead letter"


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    RETRYABLE = "retryable", "Retryable failure"
    PERMANENT = "permanent", "Permanent failure"
