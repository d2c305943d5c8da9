"""Customer context: orders, the interaction log, CSAT feedback and erasure records.

These models live in the ``tickets`` app (imported at the end of ``tickets/models.py``);
their migration is ``tickets/migrations/0003_customer_context.py``.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tickets.models import Channel, Customer, Ticket


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed (payment or fulfilment)"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


FAILED_ORDER_STATUSES = frozenset({OrderStatus.FAILED, OrderStatus.CANCELLED})
REFUND_ORDER_STATUSES = frozenset({OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED})


class Order(models.Model):
    """A customer's order as the shop or CRM knows it (imported or pushed by an integration).

    ``items`` is a list of ``{"sku", "name", "quantity", "unit_price"}``: orders are read
    whole for the context, never queried by line, so a JSON column beats a join.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    number = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=24, choices=OrderStatus.choices)
    currency = models.CharField(max_length=3, default="USD")
    total = models.DecimalField(max_digits=12, decimal_places=2)
    refunded_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    items = models.JSONField(default=list, blank=True)
    placed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-placed_at"], name="order_customer_placed_idx")
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_not_negative"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0), name="order_refund_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.number


class InteractionKind(models.TextChoices):
    MESSAGE = "message", "Customer message"
    TICKET_REOPENED = "ticket_reopened", "Ticket reopened"
    FEEDBACK = "feedback", "CSAT feedback"
    CALL = "call", "Call"
    NOTE = "note", "Note"


class SentimentLabel(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"
    MIXED = "mixed", "Mixed"


def default_interaction_expiry() -> object:
    return timezone.now() + timedelta(days=settings.INTERACTIONS_RETENTION_DAYS)


class Interaction(models.Model):
    """One entry of a customer's interaction log (PostgreSQL backend).

    ``source_key`` is the natural key (``message:<id>``, ``reopen:<event id>``…) that makes
    recording idempotent. ``scope`` names what else the entry is about when that has its
    own visibility rule (an analysed call: ``call:<contact id>``): an agent is shown the
    entry only if that rule lets them see it (``tickets.context.scopes``), as well as its
    ticket, if any. Rows expire at ``expires_at`` (default 180 days) and a beat task
    purges them. With ``INTERACTIONS_BACKEND=dynamodb`` this table stays empty.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="interactions")
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions"
    )
    source_key = models.CharField(max_length=100, unique=True)
    scope = models.CharField(
        max_length=140,
        blank=True,
        default="",
        db_default="",
        help_text="What else the entry is about, whose own rule decides who sees it, as "
        "<kind>:<key> (an analysed call's: call:<contact id>, the call page's rule); empty "
        "for none (then the ticket rule alone).",
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    kind = models.CharField(max_length=24, choices=InteractionKind.choices)
    summary = models.CharField(max_length=300, blank=True)
    sentiment_score = models.FloatField(null=True, blank=True, help_text="-1 … 1")
    sentiment_label = models.CharField(max_length=16, choices=SentimentLabel.choices, blank=True)
    occurred_at = models.DateTimeField()
    expires_at = models.DateTimeField(default=default_interaction_expiry, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-occurred_at"], name="interaction_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_key}"


class CsatFeedback(models.Model):
    """A customer's rating (1–5) of a resolved ticket; one per ticket, last answer wins."""

    ticket = models.OneToOneField(Ticket, on_delete=models.CASCADE, related_name="csat")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="csat_feedback")
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True)
    via_link = models.BooleanField(default=False, help_text="Sent through the signed link.")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The agent who recorded this answer (empty: the customer, through the link).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "CSAT feedback"
        verbose_name_plural = "CSAT feedback"
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__gte=1, rating__lte=5), name="csat_rating_1_to_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rating}/5 on {self.ticket_id}"


class CustomerErasure(models.Model):
    """Marks a customer whose personal data was erased (the row itself stays for aggregates)."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="erasure")
    erased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Erasure of customer {self.customer_id}"


class ContextDeadLetterKind(models.TextChoices):
    INTERACTION = "interaction", "History entry not recorded"
    CSAT_SURVEY = "csat_survey", "Satisfaction survey not sent"


class ContextDeadLetter(models.Model):
    """Background work of the customer context that gave up: an entry missing from a
    customer's interaction history (its task's retries spent, or an error it does not
    retry), a satisfaction survey not sent (its task failed, or the survey sweep's try
    did). One row per piece of work, its natural key the task and its arguments (``task``
    + ``args``: what a re-drive queues again); written by ``context_dead_letter_record``
    when the work gives up (again: ``failures`` + 1), deleted by a supervisor's re-drive
    or discard (audited; a re-drive that fails again is recorded again) and by the survey
    sweep once it sends or skips the survey. Counted by
    ``support_context_dead_letters{kind}`` (docs/customer-context.md, "When background
    work gives up")."""

    kind = models.CharField(max_length=24, choices=ContextDeadLetterKind.choices)
    #: the Celery task that does the work (its registered name) and its arguments (ids)
    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    # whose history or survey it is, for the supervisor (the work itself is task + args:
    # kept when these go, and a re-drive then finds nothing to do)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True, help_text="The last failure: type and message.")
    #: how many times the work gave up since it was recorded (each failed survey sweep
    #: try adds one)
    failures = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Customer-context dead letter"
        constraints = [
            models.UniqueConstraint(fields=["task", "args"], name="context_dead_letter_unique")
        ]
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.task.rsplit('.', 1)[-1]}{self.args}"
