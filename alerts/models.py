"""Alarm rules over the ``/metrics`` sources, the alerts they (and SLA events) raise, each
alert's history, and the notification targets supervisors configure."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from support.crypto import EncryptedSecretField


class Severity(models.TextChoices):
    """Seed 004's tiers: critical pages (PagerDuty), warning e-mails, info goes to Slack."""

    CRITICAL = "critical", "Critical (page)"
    WARNING = "warning", "Warning (e-mail)"
    INFO = "info", "Info (Slack)"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Comparison(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", ">="
    LT = "lt", "<"
    LTE = "lte", "<="


class Aggregation(models.TextChoices):
    WINDOW = "window", "Value over the window (the source counts over the rule's window)"
    INCREASE = "increase", "Increase over the window (a counter; from stored samples)"


class TargetKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    SLACK = "slack", "Slack incoming webhook"
    PAGERDUTY = "pagerduty", "PagerDuty (Events API v2)"
    SNS = "sns", "Amazon SNS topic"


def default_severities() -> list[str]:
    return [Severity.CRITICAL, Severity.WARNING]


class AlertTarget(models.Model):
    """Where alerts are sent, configured by supervisors. ``secret`` holds the Slack
    webhook URL or the PagerDuty routing key, encrypted at rest (``CHANNELS_SECRETS_KEY``,
    like the channel accounts' secrets)."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=TargetKind.choices)
    severities = ArrayField(
        models.CharField(max_length=16, choices=Severity.choices),
        default=default_severities,
        blank=True,
        help_text="The tiers this target receives (unless a rule names its targets).",
    )
    email_to = models.CharField(
        max_length=1000,
        blank=True,
        help_text="E-mail: comma-separated addresses; empty sends to every active "
        "supervisor with an address.",
    )
    secret = EncryptedSecretField(
        blank=True,
        help_text="Slack: the incoming webhook URL. PagerDuty: the integration's routing "
        "key. Write-only.",
    )
    topic_arn = models.CharField(max_length=300, blank=True, help_text="SNS: the topic ARN.")
    region = models.CharField(max_length=32, blank=True, help_text="SNS: empty is AWS_REGION.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def target_key(self) -> str:
        """The delivery engine's target (one circuit per configured target)."""
        return f"alert-target:{self.pk}"


class AlertRule(models.Model):
    """A stored alarm: ``metric`` (a Prometheus selector, ``name{label="v",l2=~"re"}``, the
    matching samples summed), optionally divided by ``denominator`` (a ratio such as 5xx /
    all requests), computed over ``window_seconds``, compared with ``threshold``; it fires
    after ``datapoints_to_alarm`` consecutive breaching evaluations."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(
        max_length=100, blank=True, help_text="Where the rule comes from (e.g. seed 004)."
    )
    metric = models.CharField(
        max_length=500,
        help_text='A selector over /metrics samples: name{label="value",other=~"regex"}.',
    )
    denominator = models.CharField(
        max_length=500,
        blank=True,
        help_text="Optional selector: the rule's value is metric / denominator.",
    )
    aggregation = models.CharField(
        max_length=16, choices=Aggregation.choices, default=Aggregation.WINDOW
    )
    window_seconds = models.PositiveIntegerField(default=300)
    comparison = models.CharField(max_length=8, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    datapoints_to_alarm = models.PositiveSmallIntegerField(default=1)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    enabled = models.BooleanField(default=True)
    auto_resolve = models.BooleanField(
        default=True, help_text="Resolve the alert when an evaluation no longer breaches."
    )
    targets = models.ManyToManyField(
        AlertTarget,
        blank=True,
        related_name="rules",
        help_text="Empty: every active target whose severities include the rule's.",
    )
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def fingerprint(self) -> str:
        return f"rule:{self.pk}"


class RuleEvaluation(models.Model):
    """One evaluation of a rule: the value it saw (``raw_*`` are the summed samples, kept
    for counters' increase) and whether it breached. Purged after
    ``ALERTS_EVALUATIONS_RETENTION_DAYS``."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="evaluations")
    evaluated_at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    raw_numerator = models.FloatField(null=True, blank=True)
    raw_denominator = models.FloatField(null=True, blank=True)
    breaching = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-evaluated_at", "-id"]
        indexes = [models.Index(fields=["rule", "-evaluated_at"], name="alerts_eval_rule_idx")]

    def __str__(self) -> str:
        return f"{self.rule_id} @ {self.evaluated_at:%Y-%m-%d %H:%M}: {self.value}"


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


OPEN_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


class Alert(models.Model):
    """Something a supervisor is told about: a rule that breached (fingerprint
    ``rule:<id>``) or an SLA warning/breach (``sla:<ticket id>:<target>``). At most one
    open (firing or acknowledged) alert per fingerprint."""

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    fingerprint = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING)
    value = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    subject_type = models.CharField(max_length=32, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    notified_target_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(state__in=["firing", "acknowledged"]),
                name="alerts_one_open_per_fingerprint",
            )
        ]
        indexes = [
            models.Index(
                fields=["-created_at"],
                name="alerts_open_idx",
                condition=Q(state__in=["firing", "acknowledged"]),
            ),
            models.Index(fields=["state", "severity", "-created_at"], name="alerts_state_idx"),
            # every alert of a fingerprint, resolved ones too: whether an SLA event has had
            # its alert (services.sla_event_handle, selectors.sla_outbox_ids_unalerted)
            models.Index(fields=["fingerprint"], name="alerts_fingerprint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def dedup_key(self) -> str:
        """PagerDuty's dedup_key: trigger, acknowledge and resolve of one alert share it."""
        return f"support-alert-{self.pk}"


class AlertAction(models.TextChoices):
    FIRED = "fired", "Fired"
    ESCALATED = "escalated", "Escalated"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlertEvent(models.Model):
    """The history of an alert: every state change, who made it (empty: the system) and
    when."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=16, choices=AlertAction.choices)
    from_state = models.CharField(max_length=16, choices=AlertState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=AlertState.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.alert_id}: {self.action}"
