"""Channel accounts, raw inbound webhook deliveries and web chat email verifications.

Outbound replies are ``support.delivery`` deliveries (kind ``channel_reply``)."""

from __future__ import annotations

import secrets

from django.db import models

from support.crypto import EncryptedSecretField
from tickets.models import Channel


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


class ChannelAccount(models.Model):
    """One number, page, inbox or widget on a channel; several per channel are allowed.

    Secrets (``app_secret``, ``access_token``, ``consumer_secret``, ``inbound_token``,
    ``verify_token``, ``token_secret``, ``refresh_token``, ``client_secret``) are encrypted
    at rest (``support.crypto``) and write-only in the admin: they are never rendered
    back.

    X sends with an OAuth 2.0 user token that lives about two hours: ``refresh_token``,
    ``client_id``/``client_secret`` and ``access_token_expires_at`` let
    ``channels_app.adapters.twitter.tokens`` refresh it (rotating the pair) before it
    expires and when X answers 401; ``auth_error`` says why it could not.
    """

    channel = models.CharField(max_length=16, choices=Channel.choices)
    name = models.CharField(max_length=100)
    external_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="The channel's id for this account: phone_number_id, page id, X user id, "
        "inbound address…",
    )
    webhook_token = models.CharField(
        max_length=64, unique=True, default=new_webhook_token, editable=False
    )
    app_secret = EncryptedSecretField(blank=True)
    verify_token = EncryptedSecretField(blank=True)
    access_token = EncryptedSecretField(blank=True)
    consumer_secret = EncryptedSecretField(blank=True)
    inbound_token = EncryptedSecretField(blank=True)
    token_secret = EncryptedSecretField(
        blank=True, help_text="X: the OAuth 1.0a access token secret (media downloads)."
    )
    refresh_token = EncryptedSecretField(
        blank=True,
        help_text="X: the OAuth 2.0 refresh token (scope offline.access). Single use: every "
        "refresh stores the new one X returns.",
    )
    client_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="X: the OAuth 2.0 Client ID of the app that issued the tokens.",
    )
    client_secret = EncryptedSecretField(
        blank=True,
        help_text="X: the OAuth 2.0 Client Secret (confidential client); empty for a public "
        "client.",
    )
    access_token_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the access token expires (X: about two hours after it was issued). "
        "Empty: unknown, refreshed only when X refuses it.",
    )
    token_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    auth_error = models.TextField(
        blank=True,
        editable=False,
        help_text="Why the credentials last failed for good (e.g. X refused the refresh "
        "token); cleared by a successful refresh or new credentials.",
    )
    settings = models.JSONField(
        default=dict, blank=True, help_text="Non-secret options, e.g. from_email, from_name."
    )
    is_active = models.BooleanField(default=True)
    rejected_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Deliveries refused for a missing/forged signature."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "name"], name="channel_account_name_unique")
        ]
        ordering = ["channel", "name"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.name}"

    @property
    def webhook_path(self) -> str:
        return f"/api/webhooks/{self.channel}/{self.webhook_token}"


class InboundStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (unknown event type)"
    MALFORMED = "malformed", "Malformed"
    RETRYING = "retrying", "Retrying"
    DEAD = "dead", "Dead letter"
    # CHANNELS_EMAIL_AUTH_POLICY=reject: kept, not turned into a message (supervisors see
    # it here and may release it)
    QUARANTINED = "quarantined", "Quarantined (e-mail sender not verified)"
    # A supervisor's decision (admin action, ``inbound_event_close``): a dead letter or a
    # quarantined e-mail that will not be processed; "ignored" is the drain's, for unknown
    # event types. Purged by the raw event retention like an ignored one.
    CLOSED = "closed", "Closed unprocessed"


class InboundEvent(models.Model):
    """One webhook delivery exactly as it arrived (raw body and headers)."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    account = models.ForeignKey(
        ChannelAccount, on_delete=models.PROTECT, related_name="inbound_events"
    )
    external_id = models.CharField(
        max_length=255, help_text="The delivery's natural key (provider id or body SHA-256)."
    )
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=InboundStatus.choices, default=InboundStatus.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    claims = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Drains that took this delivery and have not finished with it: left over "
        "when a worker stopped in the middle (killed, out of memory, the time limit).",
    )
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "account", "external_id"], name="inbound_event_unique"
            )
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="inbound_status_idx")]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.channel} {self.external_id[:16]} ({self.status})"

    @property
    def body_bytes(self) -> bytes:
        return bytes(self.body)


class SentEventOutcome(models.TextChoices):
    APPLIED = "applied", "Applied to the message"
    RECORDED = "recorded", "Recorded (no status change: deferred, spam report, …)"
    UNMATCHED = "unmatched", "Recorded, no message of ours"


class SentMessageEvent(models.Model):
    """One provider event about a message we sent (SendGrid's Event Webhook: delivered,
    bounce, dropped, deferred, spamreport, unsubscribe…), recorded once per provider
    event id (``sg_event_id``), so a repeated event is applied once. The raw delivery
    that carried it is ``inbound_event``; the bounce reason lives on the message
    (``delivery_error``), so this row holds no personal data."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    external_id = models.CharField(max_length=255, help_text="The provider's event id.")
    event = models.CharField(max_length=32, help_text="The provider's event name.")
    message = models.ForeignKey(
        "tickets.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    outcome = models.CharField(max_length=16, choices=SentEventOutcome.choices)
    inbound_event = models.ForeignKey(
        InboundEvent, on_delete=models.CASCADE, related_name="sent_message_events"
    )
    occurred_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "account", "external_id"], name="sent_message_event_unique"
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} {self.external_id[:16]} ({self.outcome})"


class WebchatVerification(models.Model):
    """A web chat visitor proving that an email address is theirs: a one-time code sent
    by the email channel (``channels_app.verification``).

    The code is never stored: it is an HMAC of ``code_salt`` under a key derived from
    ``SECRET_KEY``, recomputed to send it and to check it, so this table alone does not
    reveal it. The code is sent by the delivery engine (``support.delivery``, kind
    ``webchat_verification``: status, attempts, backoff, dead letter; no body with the code
    is kept); ``channels_app.verification.webchat_verification_delivery`` finds it.
    """

    account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="webchat_verifications"
    )
    email_account = models.ForeignKey(
        ChannelAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    visitor_id = models.CharField(max_length=64)
    email = models.EmailField(help_text="The address to prove (lower case).")
    code_salt = models.CharField(max_length=64, editable=False)
    expires_at = models.DateTimeField()
    failed_checks = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    customer = models.ForeignKey(
        "tickets.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The customer the visitor was linked to once verified.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["visitor_id", "-created_at"], name="webchat_verif_visitor_idx"),
            models.Index(fields=["email", "-created_at"], name="webchat_verif_email_idx"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"web chat verification {self.pk} ({self.email})"
