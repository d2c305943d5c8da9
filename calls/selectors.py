"""Reads for the API and the workbench."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from calls.models import (
    AgentStateSpan,
    Alert,
    Call,
    CallAnalytics,
    contact_hash,
)
from support.errors import NotFound


def _epoch(analytics: CallAnalytics) -> int:
    moment = analytics.call.initiated_at or analytics.created_at
    return int(moment.timestamp())


def analytics_item(analytics: CallAnalytics) -> dict[str, Any]:
    """Seed 003's item fields (plus sentiment, moderation and the path that produced it)."""
    call = analytics.call
    return {
        "hash": call.hash,
        "epchdatetimestamp": _epoch(analytics),
        "call_id": call.contact_id,
        "s3_input_uri": call.s3_input_uri or call.recording_location,
        "s3_output_uri": call.s3_output_uri,
        "bedrock_status": analytics.bedrock_status,
        "call_summary": analytics.call_summary,
        "call_categories": analytics.call_categories,
        "topics": analytics.topics,
        "transcript": analytics.transcript,
        "audio_summary": analytics.audio_summary,
        "topic_summary": analytics.topic_summary,
        "audio_content_moderation": analytics.content_moderation,
        "sentiment": analytics.sentiment,
        "analytics_path": analytics.produced_by,
        "created_at": analytics.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": analytics.updated_at.isoformat().replace("+00:00", "Z"),
    }


def analytics_list(
    *, hash: str | None = None, call_id: str | None = None, limit: int = 50, offset: int = 0
) -> list[CallAnalytics]:
    query = CallAnalytics.objects.select_related("call").order_by("-created_at", "-id")
    if call_id is not None:
        hash = contact_hash(call_id)
    if hash is not None:
        query = query.filter(call__hash=hash)
    return list(query[offset : offset + limit])


def call_list(*, filters: dict[str, str] | None = None) -> QuerySet[Call]:
    filters = filters or {}
    query = Call.objects.select_related("analytics", "ivr_journey", "customer")
    if filters.get("status"):
        query = query.filter(pipeline_status=filters["status"])
    if filters.get("q"):
        query = query.filter(contact_id__icontains=filters["q"]) | query.filter(
            customer_phone__icontains=filters["q"]
        )
    return query.order_by("-initiated_at", "-id")


def call_get(*, hash: str) -> Call:
    call = (
        Call.objects.select_related("analytics", "ivr_journey", "transcript", "customer")
        .filter(hash=hash)
        .first()
    )
    if call is None:
        raise NotFound(f"No call with hash {hash!r}.")
    return call


def agent_board() -> dict[str, Any]:
    now = timezone.now()
    spans = AgentStateSpan.objects.filter(ended_at__isnull=True).order_by("username")
    return {
        "agents": [
            {
                "username": s.username or s.agent_arn,
                "state": s.state,
                "since": s.started_at,
                "minutes": s.duration_seconds(now) // 60,
            }
            for s in spans
        ],
        "alerts": list(
            Alert.objects.select_related("rule").filter(acknowledged_at__isnull=True)[:50]
        ),
    }
