"""The delivery engine's tables: one ``Delivery`` per thing to send, its ``Attempt`` log, and
one ``Circuit`` per target (the breaker state)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from support.models import DeliveryStatus

OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
FINISHED_STATUSES = (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD)


class Outcome(models.TextChoices):
    """How one attempt ended (what the target kind's ``classify`` answered)."""

    SUCCESS = "success", "Success"
    RETRYABLE = "retryable", "Retryable failure"
    THROTTLED = "throttled", "Throttled (rate limited)"
    AUTH = "auth", "Credentials refused"
    PERMANENT = "permanent", "Permanent failure"
    # The target took the request and is still working on it (``PendingError``): asked
    # again when it said; no failure, so neither an attempt used nor a circuit failure.
    PENDING = "pending", "Pending (the target is still working on it)"
    # Recorded by the engine, never by a target kind: the worker holding the lease stopped
    # before it recorded an outcome (the request may or may not have reached the target).
    LOST = "lost", "Lost (worker stopped mid-attempt)"


#: Outcomes that say the target itself is failing (they count towards its circuit).
TARGET_FAILURES = (Outcome.RETRYABLE, Outcome.THROTTLED, Outcome.AUTH)


class Delivery(models.Model):
    """One thing to send to an outside system until it is accepted.

    ``target_kind`` names the registered integration (``support.delivery.registry``) and
    ``target_key`` the system it talks to (a channel account, a host): circuits are per
    (kind, key). ``idempotency_key`` is unique per kind, so enqueueing twice gives one row,
    and is sent to targets that deduplicate by it. ``subject_type``/``subject_id`` say
    what the delivery is about (a ticket, a call) for panels and erasure.
    """

    target_kind = models.CharField(max_length=64)
    target_key = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255)
    subject_type = models.CharField(max_length=32, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts in the current cycle (a re-drive starts a new one)."
    )
    total_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts ever made; numbers the attempt log."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Not sent after this time (a dead letter instead)."
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=96, blank=True)
    last_error = models.TextField(blank=True)
    last_http_status = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    external_id = models.CharField(
        max_length=255, blank=True, help_text="The target's id for what we sent."
    )
    possible_duplicate = models.BooleanField(
        default=False,
        help_text="An attempt was lost mid-call and sent again to a target that cannot "
        "deduplicate: the recipient may have it twice.",
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_kind", "idempotency_key"], name="delivery_idempotency_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due_idx",
                condition=Q(status__in=OPEN_STATUSES),
            ),
            models.Index(fields=["subject_type", "subject_id"], name="delivery_subject_idx"),
            models.Index(
                fields=["target_kind", "status", "-created_at"], name="delivery_kind_status_idx"
            ),
            # /health counts these on every call: small partial indexes keep it cheap.
            models.Index(
                fields=["-created_at"],
                name="delivery_dead_idx",
                condition=Q(status=DeliveryStatus.DEAD),
            ),
            models.Index(
                fields=["-created_at"],
                name="delivery_duplicate_idx",
                condition=Q(possible_duplicate=True),
            ),
            # The retention purge (services.deliveries_purge) finds the deliveries that
            # finished before its cutoff here, not among every delivery kept.
            models.Index(
                fields=["completed_at"],
                name="delivery_finished_idx",
                condition=Q(status__in=FINISHED_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target_kind} {self.idempotency_key} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class Attempt(models.Model):
    """One recorded attempt: outcome, HTTP status, duration, error, what went and came."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    request_summary = models.JSONField(default=dict, blank=True)
    response_summary = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=96, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_unique")
        ]
        indexes = [
            # Failed attempts over a recent window (the ticketing sync failures metric and
            # its alarm rules): only failures are indexed.
            models.Index(
                fields=["created_at"],
                name="delivery_attempt_failed_idx",
                condition=~Q(outcome=Outcome.SUCCESS),
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.outcome}"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "Closed (sending)"
    OPEN = "open", "Open (paused)"
    HALF_OPEN = "half_open", "Half-open (one probe in flight)"


class Circuit(models.Model):
    """The breaker of one target: after ``DELIVERY_CIRCUIT_FAILURES`` consecutive target
    failures it opens (nothing is sent to the target until ``open_until``), then lets one
    probe through (half-open): success closes it, failure opens it again."""

    target_kind = models.CharField(max_length=64)
    target_key = models.CharField(max_length=255, blank=True)
    state = models.CharField(
        max_length=16, choices=CircuitState.choices, default=CircuitState.CLOSED
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True)
    probe_until = models.DateTimeField(null=True, blank=True)
    probe_owner = models.CharField(max_length=96, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    times_opened = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["target_kind", "target_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_kind", "target_key"], name="delivery_circuit_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target_kind}:{self.target_key} ({self.state})"


class OutcomeReplay(models.Model):
    """The re-runs of a finished delivery's ``on_change`` hook by its integration's sweep,
    which found its own state behind (a reply still ``queued``): the hook failed when the
    outcome was recorded (``services._on_change_run`` logs it and keeps the record).
    Counted, spaced out and given up after a few the one way re-drives are
    (``support.sweeps``, whose column names ``attempts`` and ``attempted_at`` are these;
    ``services.deliveries_outcome_replay``): a hook that fails for ever is then left for a
    supervisor (admin: the deliveries filter "Status update given up", and the action that
    runs it again) instead of being taken by every sweep ahead of newer ones."""

    delivery = models.OneToOneField(
        Delivery, on_delete=models.CASCADE, primary_key=True, related_name="outcome_replay"
    )
    attempts = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Replays of the hook so far."
    )
    attempted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last replay ran."
    )
    last_error = models.TextField(
        blank=True, db_default="", help_text="What the hook raised at its last replay."
    )
    given_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Replays given up (the hook kept failing): a supervisor runs it again.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"status update replays of delivery {self.delivery_id}"
