"""Call analytics: Amazon Connect contacts, transcripts, AI analytics, IVR journeys,
agent states and alerts, escalations. The Salesforce records they cause are
``support.delivery`` deliveries (kind ``salesforce``, ``calls.services``)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models


def contact_hash(contact_id: str) -> str:
    """Seed 003's key: the MD5 hex digest of the call id (an identifier, not a secret)."""
    return hashlib.md5(contact_id.encode(), usedforsecurity=False).hexdigest()


class EventSource(models.TextChoices):
    CONTACT_EVENT = "contact_event", "Connect contact event (EventBridge)"
    CTR = "ctr", "Contact trace record"
    AGENT_EVENT = "agent_event", "Agent event stream record"
    RECORDING = "recording", "Recording notification (SNS/SQS)"
    TRANSCRIBE = "transcribe", "Transcribe job state change"
    S3 = "s3", "S3 object created"
    SNS = "sns", "SNS control message"
    UNKNOWN = "unknown", "Unknown"


class EventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"
    # A supervisor's decision (admin action, ``call_event_close``): a failed record that
    # will not be applied; purged by the raw event retention like an ignored one.
    CLOSED = "closed", "Closed unapplied"


class CallEvent(models.Model):
    """Every record received, raw, unique per (source, external id); bad ones kept."""

    source = models.CharField(max_length=16, choices=EventSource.choices)
    external_id = models.CharField(max_length=255)
    contact_id = models.CharField(max_length=128, blank=True, db_index=True)
    payload = models.JSONField(null=True, blank=True)
    raw_body = models.TextField(blank=True, help_text="The body as received when not JSON.")
    status = models.CharField(
        max_length=16, choices=EventStatus.choices, default=EventStatus.RECEIVED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Times the sweep (``call_events_sweep``) queued it again because it was still
    # ``received``; after ``EVENTS_SWEEP_MAX_REDRIVES`` it is given up (``failed``).
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the sweep last queued it again: the sweep leaves it alone for a while after.
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="callevent_unique_ext")
        ]
        indexes = [
            # The dead letters (calls.metrics, support_call_events_failed): a few rows
            # among every record of the retention period.
            models.Index(
                fields=["id"],
                name="callevent_failed_idx",
                condition=models.Q(status="failed"),
            ),
            # The events sweep (every minute): the few still received, oldest first.
            models.Index(
                fields=["created_at", "id"],
                name="callevent_received_idx",
                condition=models.Q(status="received"),
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} ({self.status})"


class PipelineStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    AWAITING_RECORDING = "awaiting_recording", "Awaiting recording/result"
    NO_RECORDING = "no_recording", "No recording (never reached an agent)"
    TRANSCRIBING = "transcribing", "Transcribing"
    TRANSCRIBED = "transcribed", "Transcribed"
    ANALYSED = "analysed", "Analysed"
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed"


#: The statuses a call's pipeline may still move on from (``analysed`` too: its Salesforce
#: Case may be due); the others are final.
OPEN_PIPELINE_STATUSES = [
    PipelineStatus.RECEIVED,
    PipelineStatus.AWAITING_RECORDING,
    PipelineStatus.TRANSCRIBING,
    PipelineStatus.TRANSCRIBED,
    PipelineStatus.ANALYSED,
]


class Call(models.Model):
    contact_id = models.CharField(max_length=128, unique=True)
    hash = models.CharField(max_length=32, unique=True, editable=False)
    channel = models.CharField(max_length=16, blank=True)
    initiation_method = models.CharField(max_length=32, blank=True)
    initiated_at = models.DateTimeField(null=True, blank=True, db_index=True)
    connected_to_agent_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    disconnect_reason = models.CharField(max_length=64, blank=True)
    queue_name = models.CharField(max_length=128, blank=True)
    agent_username = models.CharField(max_length=150, blank=True, db_index=True)
    agent_arn = models.CharField(max_length=255, blank=True)
    customer_phone = models.CharField(max_length=32, blank=True)
    customer = models.ForeignKey(
        "tickets.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    recording_location = models.CharField(max_length=1024, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The latest full record.")
    pipeline_status = models.CharField(
        max_length=24, choices=PipelineStatus.choices, default=PipelineStatus.RECEIVED
    )
    pipeline_error = models.TextField(blank=True)
    transcription_job = models.CharField(
        max_length=255, blank=True, help_text="Transcribe job name or Data Automation ARN."
    )
    s3_input_uri = models.CharField(max_length=1024, blank=True)
    s3_output_uri = models.CharField(max_length=1024, blank=True)
    # The version of that object the latest S3 event named (its versionId, else its eTag):
    # Data Automation writes a new result for a call at the same key, and a different
    # version is read again (``call_transcribe``).
    s3_output_version = models.CharField(max_length=255, blank=True)
    # Times the pipeline sweep (``call_pipelines_sweep``) restarted the chain of this call
    # since the chain was last started by anything else (an event, the admin's re-run);
    # after ``PIPELINE_SWEEP_MAX_RESTARTS`` the call is given up (``failed``, with the
    # reason). The names are ``support.sweeps.RedrivePolicy``'s.
    attempts = models.PositiveSmallIntegerField(
        "pipeline restarts by the sweep", default=0, db_default=0
    )
    # When the sweep last restarted it: the sweep leaves it alone for a while after.
    attempted_at = models.DateTimeField("last restarted by the sweep", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-initiated_at", "-id"]
        indexes = [
            # The pipeline sweep and support_calls_stalled on every /metrics scrape
            # (calls.services.sweeps.call_pipelines_stalled): the few calls in a
            # non-final status, oldest update first.
            models.Index(
                fields=["updated_at", "id"],
                name="call_pipeline_open_idx",
                condition=models.Q(pipeline_status__in=OPEN_PIPELINE_STATUSES),
            ),
            # support_calls (calls.metrics, every /metrics scrape and every alarm run):
            # the calls recorded in the window.
            models.Index(fields=["created_at"], name="call_created_idx"),
            # support_call_bedrock_failures: the failed calls, by when they failed (a
            # failed call's updated_at); a handful next to every call kept.
            models.Index(
                fields=["updated_at"],
                name="call_failed_idx",
                condition=models.Q(pipeline_status=PipelineStatus.FAILED),
            ),
        ]

    def __str__(self) -> str:
        return self.contact_id

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.hash:
            self.hash = contact_hash(self.contact_id)
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def duration_seconds(self) -> int | None:
        if self.initiated_at and self.disconnected_at:
            return int((self.disconnected_at - self.initiated_at).total_seconds())
        return None


class QueueTeam(models.Model):
    """Which team's agents see the calls of a Connect queue (managed in the admin).

    An agent sees a call whose ``queue_name`` maps to one of its teams; calls of a queue
    with no mapping (or with no queue, e.g. callers who left in the IVR) are for
    supervisors only. A queue may map to several teams.
    """

    queue_name = models.CharField(
        max_length=128, help_text="The Connect queue name, exactly as on calls (Queue.Name)."
    )
    team = models.ForeignKey("tickets.Team", on_delete=models.CASCADE, related_name="call_queues")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue_name", "team"], name="queueteam_unique")
        ]
        ordering = ["queue_name", "team_id"]
        verbose_name = "queue → team mapping"

    def __str__(self) -> str:
        return f"{self.queue_name} → team {self.team_id}"


class Transcript(models.Model):
    """Segments: ``[{"speaker", "start", "end", "text", "sentiment"}]`` (seconds)."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="transcript")
    source = models.CharField(max_length=32, help_text="transcribe | data_automation")
    text = models.TextField(blank=True)
    segments = models.JSONField(default=list, blank=True)
    source_ref = models.CharField(
        max_length=1400,
        blank=True,
        help_text="What it was made from: the result object read (uri#version) or the "
        "recording transcribed. Another one replaces it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Transcript of {self.call_id}"


class AnalyticsPath(models.TextChoices):
    DATA_AUTOMATION = "data_automation", "Bedrock Data Automation"
    TRANSCRIBE_MODEL = "transcribe_model", "Transcribe + model"
    LOCAL = "local", "Local (offline)"


#: Providers' names as people write them (others: their code in words).
PROVIDER_LABELS = {
    "bedrock": "Bedrock",
    "openai": "OpenAI",
    "local": "Local",
    "data_automation": "Data Automation",
}


def provider_label(name: str) -> str:
    return PROVIDER_LABELS.get(name) or name.replace("_", " ").capitalize()


class CategoriesBy(models.TextChoices):
    """Who chose a call's categories (``CallAnalytics.categories_by``)."""

    RULES = "rules", "Keyword rules"
    MODEL = "model", "The model"


class CallAnalytics(models.Model):
    """Seed 003's record: summary, categories, topics and the standard outputs."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="analytics")
    call_summary = models.TextField(blank=True)
    call_categories = models.JSONField(default=list, blank=True)
    categories_by = models.CharField(
        max_length=8,
        db_default="",
        choices=CategoriesBy.choices,
        blank=True,
        help_text="Who chose the categories: the keyword rules (also when a model named "
        "none of ours) or the model; blank for Data Automation's own and for analyses "
        "stored before 2026-12-06.",
    )
    topics = models.JSONField(default=list, blank=True)
    transcript = models.TextField(blank=True)
    audio_summary = models.TextField(blank=True)
    topic_summary = models.TextField(blank=True)
    content_moderation = models.JSONField(default=list, blank=True)
    sentiment = models.CharField(max_length=16, blank=True)
    sentiment_score = models.FloatField(null=True, blank=True)
    bedrock_status = models.CharField(max_length=32, blank=True)
    produced_by = models.CharField(max_length=24, choices=AnalyticsPath.choices)
    provider = models.CharField(max_length=32, blank=True)
    fallback_from = models.CharField(
        max_length=32,
        db_default="",
        blank=True,
        help_text="The model provider that failed, when the offline analysis stood in for it "
        "(any provider; bedrock_status says so only for Bedrock).",
    )
    source_ref = models.CharField(
        max_length=1400,
        blank=True,
        help_text="The transcript's source_ref these analytics were made from.",
    )
    version = models.PositiveIntegerField(
        default=1,
        help_text="Raised each time a new result or transcript changes them (the "
        "Salesforce Case is sent again for each version).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "call analytics"

    def __str__(self) -> str:
        return f"Analytics of {self.call_id}"

    @property
    def provider_label(self) -> str:
        return provider_label(self.provider)

    @property
    def fallback_from_label(self) -> str:
        return provider_label(self.fallback_from)


class JourneyOutcome(models.TextChoices):
    SELF_SERVICE = "self_service", "Completed in the IVR"
    AGENT = "agent", "Reached an agent"
    QUEUED = "queued", "Queued"
    FAILED = "failed", "Failed"


class IVRJourney(models.Model):
    """Ordered steps ``[{"flow", "module", "prompt", "input", "result", "time"}]``."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="ivr_journey")
    steps = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=JourneyOutcome.choices)
    failure_kind = models.CharField(max_length=32, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"IVR journey of {self.call_id} ({self.outcome})"


class Escalation(models.Model):
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="escalations")
    kind = models.CharField(max_length=32)
    reason = models.TextField()
    ticket = models.ForeignKey(
        "tickets.Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["call", "kind"], name="escalation_unique_call_kind")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.call_id}"


class AgentStateEvent(models.Model):
    """One agent event stream record (raw kept)."""

    event_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=16)
    agent_arn = models.CharField(max_length=255, db_index=True)
    username = models.CharField(max_length=150, blank=True)
    state = models.CharField(max_length=64, blank=True)
    state_started_at = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    raw = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.username or self.agent_arn} {self.event_type} {self.state}"


class AgentStateSpan(models.Model):
    """A period in one state; ``ended_at`` is empty while it lasts."""

    agent_arn = models.CharField(max_length=255)
    username = models.CharField(max_length=150, blank=True)
    state = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent_arn", "state", "started_at"], name="span_unique_start"
            ),
            models.UniqueConstraint(
                fields=["agent_arn"],
                condition=models.Q(ended_at__isnull=True),
                name="span_one_open_per_agent",
            ),
        ]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.username or self.agent_arn} {self.state} from {self.started_at}"

    def duration_seconds(self, now: object = None) -> int:
        from django.utils import timezone

        end = self.ended_at or now or timezone.now()
        return max(0, int((end - self.started_at).total_seconds()))  # type: ignore[operator]


class AlertKind(models.TextChoices):
    STATE_LONGER_THAN = "state_longer_than", "State lasts longer than N minutes"
    OFFLINE_DURING_SHIFT = "offline_during_shift", "Offline during shift"


class AlertRule(models.Model):
    """A rule over agents' states (seed 002): a state lasting longer than N minutes, or
    offline during a shift. Not the alarm rules over the metrics (``alerts.AlertRule``)."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    state = models.CharField(
        max_length=64, blank=True, help_text="For state rules, e.g. AfterContactWork."
    )
    threshold_minutes = models.PositiveIntegerField(default=5)
    shift_start = models.TimeField(null=True, blank=True)
    shift_end = models.TimeField(null=True, blank=True)
    notify_sns = models.BooleanField(
        default=False, help_text="Also publish to CALLS_ALERT_SNS_TOPIC_ARN."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The admin lists the alerts app's rules too: each says which it is.
        verbose_name = "agent-state alert rule"
        verbose_name_plural = "agent-state alert rules"

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """An agent-state rule's alert about one span (not an ``alerts.Alert``)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    span = models.ForeignKey(AgentStateSpan, on_delete=models.CASCADE, related_name="alerts")
    username = models.CharField(max_length=150, blank=True)
    message = models.TextField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # Who acknowledged it (the board's button or the admin action); empty before it was kept.
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "span"], name="alert_unique_span")]
        ordering = ["-created_at"]
        verbose_name = "agent-state alert"
        verbose_name_plural = "agent-state alerts"

    def __str__(self) -> str:
        return self.message


class SalesforceObject(models.TextChoices):
    CASE = "Case", "Case"
    TASK = "Task", "Task"
