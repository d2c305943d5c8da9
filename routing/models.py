"""Routing decisions, router models, the category → team map and service status. The
external ticketing sync is a ``support.delivery`` delivery (``routing.services``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tickets.models import Priority, Team, Ticket


def decision_expiry() -> object:
    return timezone.now() + timedelta(days=settings.ROUTING_DECISION_RETENTION_DAYS)


class RouterModel(models.Model):
    """One trained text classifier; exactly one is active. Older ones stay for rollback."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    is_active = models.BooleanField(default=False)
    labels = models.JSONField(default=list, help_text="The labels the model predicts.")
    label_to_category = models.JSONField(
        default=dict, blank=True, help_text="Intent → category, when trained with categories."
    )
    features = models.CharField(max_length=64, help_text="Feature set, e.g. tfidf+minilm.")
    metrics = models.JSONField(default=dict, blank=True)
    training = models.JSONField(default=dict, blank=True, help_text="Data file, rows, seconds.")
    artifact = models.BinaryField(help_text="The serialised classifier (joblib, compressed).")
    artifact_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="router_model_version_unique"),
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="router_model_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}{' (active)' if self.is_active else ''}"


class CategoryTeam(models.Model):
    """Category → team map used by ``route_to_team`` (managed in admin)."""

    category = models.CharField(max_length=64, unique=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="routing_categories")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category"]
        verbose_name = "category → team"
        verbose_name_plural = "category → team map"

    def __str__(self) -> str:
        return f"{self.category} → {self.team}"


class ServiceStatus(models.Model):
    """A service customers use, as the status tool sees it (managed in admin)."""

    class State(models.TextChoices):
        OPERATIONAL = "operational", "Operational"
        DEGRADED = "degraded", "Degraded"
        OUTAGE = "outage", "Outage"

    service_id = models.CharField(max_length=32, unique=True, help_text="e.g. SVC123")
    name = models.CharField(max_length=100)
    keywords = models.CharField(
        max_length=255, blank=True, help_text="Comma-separated words that name this service."
    )
    categories = models.CharField(
        max_length=255, blank=True, help_text="Comma-separated categories it relates to."
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPERATIONAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service_id"]
        verbose_name_plural = "service statuses"

    def __str__(self) -> str:
        return f"{self.service_id} {self.name} ({self.state})"


class Outage(models.Model):
    """An active outage or known issue on a service."""

    service = models.ForeignKey(ServiceStatus, on_delete=models.CASCADE, related_name="outages")
    title = models.CharField(max_length=200)
    is_known_issue = models.BooleanField(default=False, help_text="Known issue, not an outage.")
    started_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return self.title


class SyncStatus(models.TextChoices):
    NOT_CONFIGURED = "", "Not configured"
    PENDING = "pending", "Pending"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


#: The attempt key of the decision made again on the customer's first message, on a
#: ticket the system opened (an IVR failure) whose first decision went to review for want
#: of the customer's words (``routing.services.routing_customer_text_decide``). One per
#: ticket, as every attempt key.
CUSTOMER_TEXT_ATTEMPT = "customer-text"


class RoutingDecision(models.Model):
    """One routing decision for a ticket (seed 004's table). One per ticket and attempt key."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="routing_decisions")
    attempt_key = models.CharField(max_length=64, default="initial")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    team_slug = models.CharField(max_length=100, blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices)
    priority_score = models.FloatField(default=0)
    confidence = models.FloatField(
        help_text="The classifier's calibrated probability of the decision's category (what "
        "the review threshold reads; seed 004's confidence_score), whatever the provider; 0 "
        'when nothing measured it (review reason "confidence not measured").'
    )
    model_stated_confidence = models.FloatField(
        null=True,
        blank=True,
        help_text="The figure an LLM provider (bedrock, openai) stated for its own decision, "
        "as it answered: not measured; below the review threshold it adds a review reason, "
        "it never skips one. Empty: the local provider.",
    )
    category = models.CharField(max_length=64, blank=True)
    intent = models.CharField(max_length=64, blank=True)
    classification = models.JSONField(default=dict, help_text="category, intent, secondary")
    entities = models.JSONField(default=dict, blank=True)
    reasoning = models.TextField(blank=True)
    reasons = models.JSONField(default=list, blank=True)
    requires_manual_review = models.BooleanField(default=False)
    review_reasons = models.JSONField(default=list, blank=True)
    out_of_scope = models.BooleanField(
        null=True,
        blank=True,
        help_text="The trained router found the text unlike any intent it was trained on "
        "(sent to review): a share that grows says customers ask something new. Empty: "
        "the router has no out-of-scope detector.",
    )
    applied = models.BooleanField(default=False, help_text="Team and priority set on the ticket.")
    demo = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Made up by the demo loader (routing/demo.py's history: no AI provider was "
        "called; its tokens, cost, provider errors and verdicts are invented). Shown with a "
        '"Demo data" mark on the ticket\'s routing panel and on the dashboard.',
    )
    processing_ms = models.FloatField(default=0)
    tool_calls = models.JSONField(default=list, help_text="[{name, input, output, ms}]")
    provider = models.CharField(max_length=32)
    model_id = models.CharField(max_length=200, blank=True)
    router_model = models.ForeignKey(
        RouterModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    fallback_from = models.CharField(max_length=32, blank=True)
    fallback_reason = models.TextField(blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    correlation_id = models.UUIDField()
    sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.NOT_CONFIGURED, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(default=decision_expiry, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "attempt_key"], name="routing_decision_attempt_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["requires_manual_review", "-created_at"], name="routing_review_idx"
            ),
            models.Index(fields=["sync_status", "-created_at"], name="routing_sync_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.ticket_id}: {self.team_slug or '—'} / {self.priority} ({self.confidence:.2f})"
        )


class FeedbackVerdict(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    OVERRIDDEN = "overridden", "Overridden"


class RoutingFeedback(models.Model):
    """A person's verdict on a decision; overrides are labels for the next training run.

    A verdict outlives its decision: the retention purge deletes the decision (its
    entities, reasons and tool trace) and leaves ``decision`` empty, while the verdict
    keeps what training reads (the label and the ticket's routed ``text``, a copy of what
    the ticket itself keeps until its customer is erased; ``ticket`` is how the erasure
    finds it). docs/routing.md, "Retention"."""

    decision = models.ForeignKey(
        RoutingDecision,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback",
        help_text="Empty once the decision was purged (retention); the verdict stays.",
    )
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="routing_verdicts")
    verdict = models.CharField(max_length=16, choices=FeedbackVerdict.choices)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    priority = models.CharField(max_length=16, choices=Priority.choices, blank=True)
    category = models.CharField(max_length=64, blank=True)
    intent = models.CharField(max_length=64, blank=True)
    team_correct = models.BooleanField()
    priority_correct = models.BooleanField()
    text = models.TextField(blank=True, help_text="The ticket text, kept for training.")
    note = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # /metrics window

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        decision = self.decision_id or "purged"
        return f"{self.verdict} on ticket {self.ticket_id} (decision {decision})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.ticket_id is None and self.decision is not None:
            # the decision's ticket, kept for when the decision is purged
            self.ticket_id = self.decision.ticket_id
        super().save(*args, **kwargs)


class RoutingFailure(models.Model):
    """A ticket whose routing task failed: what the routing sweep knows of it (one row a
    ticket; deleted once a decision is stored). docs/routing.md, "Never unrouted".

    Permanent (the ticket's own data will never route: the database refuses it, the code
    calls it invalid): recorded once and never swept again; the admin lists it and routes
    it again on request. Transient (the database or a provider away, a time limit, an
    error not known to be the ticket's): swept again from ``next_attempt_at``, the wait
    doubling with each failure."""

    ticket = models.OneToOneField(Ticket, on_delete=models.CASCADE, related_name="routing_failure")
    permanent = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed routing tasks.")
    error = models.TextField(blank=True, help_text="The last failure: type and message.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep may route it again; empty: never."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        kind = "permanent" if self.permanent else f"retry at {self.next_attempt_at}"
        return f"routing of ticket {self.ticket_id} failed ({kind})"
