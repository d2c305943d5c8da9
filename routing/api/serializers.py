from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tickets.models import Priority


class RoutingFeedbackOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    verdict = serializers.CharField()
    # A method field so the schema knows the type (`check --deploy` warned about it).
    team = serializers.SerializerMethodField()
    priority = serializers.CharField()
    category = serializers.CharField()
    intent = serializers.CharField()
    team_correct = serializers.BooleanField()
    priority_correct = serializers.BooleanField()
    note = serializers.CharField()
    actor = serializers.StringRelatedField()  # type: ignore[var-annotated]
    created_at = serializers.DateTimeField()

    def get_team(self, feedback: Any) -> str | None:
        """The corrected team's slug (none when the feedback names no team)."""
        return feedback.team.slug if feedback.team_id else None


class RoutingDecisionOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    ticket_id = serializers.IntegerField()
    attempt_key = serializers.CharField()
    team = serializers.CharField(source="team_slug")
    team_id = serializers.IntegerField(allow_null=True)
    priority = serializers.CharField()
    priority_score = serializers.FloatField()
    confidence = serializers.FloatField(
        help_text="The classifier's calibrated probability of the decision's category (what "
        "the review threshold reads), whatever the provider; 0 when nothing measured it."
    )
    model_stated_confidence = serializers.FloatField(
        allow_null=True,
        help_text="An LLM provider's own figure for its decision, as stated (not measured; "
        "it can only add a review reason). Null: the local provider.",
    )
    category = serializers.CharField()
    intent = serializers.CharField()
    classification = serializers.JSONField()
    entities = serializers.JSONField()
    reasoning = serializers.CharField()
    reasons = serializers.JSONField()
    requires_manual_review = serializers.BooleanField()
    review_reasons = serializers.JSONField()
    applied = serializers.BooleanField()
    demo = serializers.BooleanField(
        help_text="Made up by the demo loader (no AI provider was called): demo data."
    )
    processing_ms = serializers.FloatField()
    tool_calls = serializers.JSONField()
    provider = serializers.CharField()
    model_id = serializers.CharField()
    fallback_from = serializers.CharField()
    fallback_reason = serializers.CharField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=10, decimal_places=6)
    correlation_id = serializers.UUIDField()
    sync_status = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    feedback = RoutingFeedbackOutputSerializer(many=True)


class TicketRoutingOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    latest = RoutingDecisionOutputSerializer(allow_null=True)
    history = RoutingDecisionOutputSerializer(many=True)
    routing_status = serializers.ChoiceField(
        choices=["decided", "pending", "failed", "expired", "disabled", "not_routed"],
        help_text="Where routing stands: a decision, one to come, or none coming (and why).",
    )
    routing_status_reason = serializers.CharField(
        allow_null=True, help_text="Why, in words; null once decided."
    )


#: ``RoutingFeedback.category`` / ``.intent`` hold this many characters.
LABEL_MAX_LENGTH = 64


class RoutingOverrideInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    decision_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Default: the latest."
    )
    team = serializers.CharField(help_text="Team slug.")
    priority = serializers.ChoiceField(choices=Priority.choices)
    category = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=LABEL_MAX_LENGTH
    )
    intent = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=LABEL_MAX_LENGTH
    )
    note = serializers.CharField(required=False, allow_blank=True, default="")


class RoutingAcceptInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    decision_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Default: the latest."
    )


class RoutingVerdictOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    decision = RoutingDecisionOutputSerializer()
    feedback = RoutingFeedbackOutputSerializer()
