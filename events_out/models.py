"""Outgoing webhooks a supervisor configures (admin: Events out → Outgoing webhooks)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from support.crypto import EncryptedSecretField


class OutgoingWebhook(models.Model):
    """An HTTPS endpoint that receives the selected event types, one signed POST per event
    (``events_out.signing``), each a ``support.delivery`` delivery of kind ``webhook_event``.

    The secret is encrypted at rest like the channel accounts' secrets
    (``CHANNELS_SECRETS_KEY``, rotated by ``manage.py channel_secrets_reencrypt``).
    """

    name = models.CharField(max_length=100)
    url = models.CharField(
        max_length=2048,
        help_text="https URL that receives a signed POST per event (public hosts only).",
    )
    event_types = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    secret = EncryptedSecretField(
        help_text="Signs every request (HMAC-SHA256); share it with the receiver."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def target_key(self) -> str:
        """The delivery engine's target (one circuit per webhook)."""
        return f"webhook:{self.pk}"
