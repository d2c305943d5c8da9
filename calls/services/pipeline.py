"""The per-call pipeline: transcription, then analytics (then the Salesforce Case,
in ``calls.services.salesforce``)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from calls.analytics.providers import AnalyticsProvider, get_provider, segment_sentiments
from calls.models import (
    AnalyticsPath,
    Call,
    CallAnalytics,
    PipelineStatus,
    Transcript,
)
from calls.parsers import (
    ParsedResult,
)
from calls.selectors import call_redaction_names
from calls.transcription import get_backend, result_from_s3_object
from support.errors import RetryableError
from support.events import event_record

logger = logging.getLogger(__name__)


# --- pipeline steps ------------------------------------------------------------------------


def call_pipeline_schedule(call: Call) -> None:
    """Run the chain after commit; every step is idempotent, so re-running resumes."""
    from calls.tasks import call_pipeline_start

    call_pk = call.pk
    transaction.on_commit(lambda: call_pipeline_start(call_pk))


def _set_status(call: Call, status: str, error: str = "") -> None:
    Call.objects.filter(pk=call.pk).update(
        pipeline_status=status, pipeline_error=error[:2000], updated_at=timezone.now()
    )


def transcript_save(*, call: Call, result: ParsedResult) -> Transcript:
    """Persist a parsed result; Data Automation's own analytics are persisted with it."""
    labels, overall, score = segment_sentiments(result.segments)
    segments = []
    for seg, label in zip(result.segments, labels, strict=True):
        seg.sentiment = seg.sentiment or label
        segments.append(seg.as_dict())
    text = result.text or " ".join(s.text for s in result.segments)
    with transaction.atomic():
        transcript, _ = Transcript.objects.update_or_create(
            call=call, defaults={"source": result.source, "text": text, "segments": segments}
        )
        if result.source == "data_automation" and (result.summary or result.categories):
            CallAnalytics.objects.update_or_create(
                call=call,
                defaults={
                    "call_summary": result.summary,
                    "call_categories": result.categories,
                    "topics": result.topics,
                    "transcript": text,
                    "audio_summary": result.audio_summary,
                    "topic_summary": result.topic_summary,
                    "content_moderation": result.content_moderation,
                    "sentiment": overall,
                    "sentiment_score": score,
                    "bedrock_status": result.bedrock_status,
                    "produced_by": AnalyticsPath.DATA_AUTOMATION,
                    "provider": "data_automation",
                },
            )
        _set_status(call, PipelineStatus.TRANSCRIBED)
    return transcript


def _no_recording_expected(call: Call) -> bool:
    """The contact ended without reaching an agent (the caller hung up in the IVR or the
    queue): Connect records the agent's conversation, so no recording will come."""
    return (
        call.disconnected_at is not None
        and call.connected_to_agent_at is None
        and not call.agent_username
        and not (call.s3_input_uri or call.recording_location)
    )


def _nothing_to_transcribe(call: Call) -> str:
    """No recording yet: ``none`` when none will come (the call never reached an agent),
    else ``waiting`` (an S3/Transcribe event or notification resumes the pipeline)."""
    if _no_recording_expected(call):
        _set_status(call, PipelineStatus.NO_RECORDING)
        return "none"
    _set_status(call, PipelineStatus.AWAITING_RECORDING)
    return "waiting"


def call_transcribe(*, call_id: int) -> str:
    """Step 1. Answers ``done``, ``pending`` (job running: poll again), ``waiting``
    (nothing to transcribe yet; an S3/Transcribe event or notification resumes) or ``none``
    (the call never reached an agent: no recording is expected; one that still arrives
    resumes the pipeline like any other)."""
    call = Call.objects.get(pk=call_id)
    if Transcript.objects.filter(call=call).exists():
        return "done"
    if call.s3_output_uri:
        transcript_save(call=call, result=result_from_s3_object(call.s3_output_uri))
        return "done"
    backend = get_backend()
    if backend.name != "local":
        if not (call.s3_input_uri or call.recording_location):
            return _nothing_to_transcribe(call)
        if not call.transcription_job:
            handle = backend.start(call)
            Call.objects.filter(pk=call.pk).update(transcription_job=handle)
            call.transcription_job = handle
            _set_status(call, PipelineStatus.TRANSCRIBING)
    result = backend.fetch(call)
    if result is None:
        return _nothing_to_transcribe(call) if backend.name == "local" else "pending"
    transcript_save(call=call, result=result)
    return "done"


def _set_status_unless_synced(call_id: int, status: str) -> None:
    """Like ``_set_status``, but never moves a call back from ``synced`` (a later step that
    another run of the chain may have finished meanwhile)."""
    Call.objects.filter(pk=call_id).exclude(pipeline_status=PipelineStatus.SYNCED).update(
        pipeline_status=status, pipeline_error="", updated_at=timezone.now()
    )


#: ``CallAnalytics.bedrock_status`` of an analysis made locally because Bedrock failed.
BEDROCK_FAILED = "Failed"


def call_analyse(
    *, call_id: int, provider: AnalyticsProvider | None = None
) -> CallAnalytics | None:
    """Step 2: summary, categories, topics through the configured provider.

    The provider (Bedrock: up to a 60 s read timeout) is called with no transaction open:
    read the transcript, call, then write in a short transaction that locks the call and
    re-checks. If the transcript changed meanwhile (an erasure redacted it, or a new result
    replaced it) the answer is stale: nothing is written and the step is retried, so the
    erased words never come back through a summary. If another run stored analytics first,
    theirs stand (one ``call.analysed`` event) and a later status is kept.
    """
    call = Call.objects.get(pk=call_id)
    existing = CallAnalytics.objects.filter(call=call).first()
    if existing is not None:
        _set_status_unless_synced(call.pk, PipelineStatus.ANALYSED)
        return existing
    transcript = Transcript.objects.filter(call=call).first()
    if transcript is None:
        return None
    from calls.parsers import Segment

    segments = [
        Segment(s["speaker"], s["start"], s["end"], s["text"], s.get("sentiment", ""))
        for s in transcript.segments
    ]
    provider = provider or get_provider()
    analysis = provider.analyse(
        text=transcript.text, segments=segments, names=call_redaction_names(call)
    )
    if analysis.fallback_from:
        logger.warning(
            "Call %s analysed locally: %s failed (%s)",
            call_id,
            analysis.fallback_from,
            analysis.fallback_reason,
        )
    path = AnalyticsPath.LOCAL if analysis.provider == "local" else AnalyticsPath.TRANSCRIBE_MODEL
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        current = Transcript.objects.filter(call=call).values("text", "segments").first()
        if current != {"text": transcript.text, "segments": transcript.segments}:
            raise RetryableError(f"The transcript of call {call_id} changed during analysis.")
        analytics, created = CallAnalytics.objects.get_or_create(
            call=call,
            defaults={
                "call_summary": analysis.summary,
                "call_categories": analysis.categories,
                "topics": analysis.topics,
                "transcript": transcript.text,
                "sentiment": analysis.sentiment,
                "sentiment_score": analysis.sentiment_score,
                # A Bedrock failure that fell back is stored too (seed 003's Bedrock
                # failures, support_call_bedrock_failures).
                "bedrock_status": analysis.bedrock_status
                or (BEDROCK_FAILED if analysis.fallback_from == "bedrock" else ""),
                "produced_by": path,
                "provider": analysis.provider,
            },
        )
        _set_status_unless_synced(call.pk, PipelineStatus.ANALYSED)
        if created:
            event_record(
                "call.analysed",
                aggregate_type="call",
                aggregate_id=call.pk,
                payload={
                    "call_id": call.contact_id,
                    "hash": call.hash,
                    "categories": analytics.call_categories,
                },
            )
    return analytics
