"""The per-call pipeline: transcription, then analytics (then the Salesforce Case,
in ``calls.services.salesforce``)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls.analytics.providers import AnalyticsProvider, get_provider, segment_sentiments
from calls.models import (
    AnalyticsPath,
    Call,
    CallAnalytics,
    Escalation,
    PipelineStatus,
    Transcript,
)
from calls.parsers import (
    ParsedResult,
)
from calls.selectors import CALL_SCOPE, call_redaction_names
from calls.transcription import get_backend, result_from_s3_object
from support.errors import RetryableError
from support.events import event_record
from support.redaction import redact
from support.services import audit_log_record
from tickets.context.models import InteractionKind
from tickets.context.scopes import scope_make
from tickets.context.services import interaction_record
from tickets.models import Channel

logger = logging.getLogger(__name__)


# --- pipeline steps ------------------------------------------------------------------------


def call_pipeline_schedule(call: Call) -> None:
    """Run the chain after commit; every step is idempotent, so re-running resumes. The
    chain started by an event, the pipeline sweep's count of restarts starts again."""
    from calls.tasks import call_pipeline_start

    call_pk = call.pk
    if call.attempts or call.attempted_at:
        call_pipeline_restarts_reset(call_ids=[call_pk])
    transaction.on_commit(lambda: call_pipeline_start(call_pk))


def call_pipeline_restarts_reset(*, call_ids: list[int]) -> None:
    """The chain is started by something other than the pipeline sweep (a new event, the
    admin's "Re-run the pipeline"): the sweep's count of restarts (``Call.attempts``,
    ``calls.services.sweeps.PIPELINE_REDRIVE``) starts again, as the admin's re-drive of a
    call event starts its count again."""
    Call.objects.filter(pk__in=call_ids).exclude(attempts=0, attempted_at=None).update(
        attempts=0, attempted_at=None
    )


def call_pipeline_rerun(*, call_ids: list[int], actor: Any) -> list[int]:
    """A supervisor re-runs the pipeline of these calls (admin "Re-run the pipeline"): the
    sweep's count of restarts starts again (``call_pipeline_restarts_reset``) and each
    call is audit-logged (``call.pipeline_rerun``, with its status and error as they were),
    as the admin's other supervisor actions are. Returns the ids of the calls found, in
    order, for the caller to start their chains once this has committed."""
    with transaction.atomic():
        calls = list(
            Call.objects.filter(pk__in=call_ids)
            .order_by("pk")
            .values_list("pk", "contact_id", "pipeline_status", "pipeline_error")
        )
        ids = [pk for pk, *_ in calls]
        call_pipeline_restarts_reset(call_ids=ids)
        for pk, contact_id, status, error in calls:
            audit_log_record(
                actor=actor,
                action="call.pipeline_rerun",
                object_type="calls.Call",
                object_id=pk,
                details={"contact_id": contact_id, "status": status, "error": error[:500]},
            )
    return ids


def _set_status(call: Call, status: str, error: str = "") -> None:
    Call.objects.filter(pk=call.pk).update(
        pipeline_status=status, pipeline_error=error[:2000], updated_at=timezone.now()
    )


def call_result_ref(call: Call) -> str:
    """The result object the call names, as ``uri#version`` (just the uri when the event
    named no version): what a transcript read from it records as its ``source_ref``."""
    if not call.s3_output_uri:
        return ""
    if call.s3_output_version:
        return f"{call.s3_output_uri}#{call.s3_output_version}"
    return call.s3_output_uri


def call_recording_ref(call: Call) -> str:
    """The recording a transcription backend transcribes (seed 003's ``audioS3Uri``, else
    the contact trace record's ``Recording.Location``)."""
    return call.s3_input_uri or call.recording_location


#: The analytics fields a Data Automation result carries (``transcript_save``).
_DA_FIELDS = (
    "call_summary",
    "call_categories",
    "categories_by",
    "topics",
    "transcript",
    "audio_summary",
    "topic_summary",
    "content_moderation",
    "sentiment",
    "sentiment_score",
    "bedrock_status",
    "produced_by",
    "provider",
    "fallback_from",
)


def transcript_save(*, call: Call, result: ParsedResult, source_ref: str = "") -> Transcript:
    """Persist a parsed result made from ``source_ref``; Data Automation's own analytics
    are persisted with it.

    A result for a call that has a transcript replaces it (seed 003: "a new Data
    Automation result overwrites the record"). Analytics that differ from the stored
    ones replace them as a new ``version`` (the Salesforce Case is sent again); the same
    words and analytics again change nothing but ``source_ref`` and leave the call's
    status alone. Words that changed with no analytics in the result leave the stored
    analytics stale (another ``source_ref``): ``call_analyse`` makes new ones.
    """
    labels, overall, score = segment_sentiments(result.segments)
    segments = []
    for seg, label in zip(result.segments, labels, strict=True):
        seg.sentiment = seg.sentiment or label
        segments.append(seg.as_dict())
    text = result.text or " ".join(s.text for s in result.segments)
    with transaction.atomic():
        # The call's row first (the lock order of call_analyse): two runs reading results
        # for one call write one after the other.
        Call.objects.select_for_update().only("pk").get(pk=call.pk)
        existing = Transcript.objects.filter(call=call).first()
        same_words = (
            existing is not None and existing.text == text and existing.segments == segments
        )
        changed = not same_words
        transcript, _ = Transcript.objects.update_or_create(
            call=call,
            defaults={
                "source": result.source,
                "text": text,
                "segments": segments,
                "source_ref": source_ref,
            },
        )
        analytics = CallAnalytics.objects.select_for_update().filter(call=call).first()
        if result.source == "data_automation" and (result.summary or result.categories):
            values = {
                "call_summary": result.summary,
                "call_categories": result.categories,
                "categories_by": "",  # Data Automation's own
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
                "fallback_from": "",
            }
            if analytics is None:
                CallAnalytics.objects.create(call=call, source_ref=source_ref, **values)
                changed = True
            elif any(getattr(analytics, name) != values[name] for name in _DA_FIELDS):
                CallAnalytics.objects.filter(pk=analytics.pk).update(
                    **values,
                    source_ref=source_ref,
                    version=F("version") + 1,
                    updated_at=timezone.now(),
                )
                changed = True
            else:
                CallAnalytics.objects.filter(pk=analytics.pk).update(source_ref=source_ref)
        elif analytics is not None and same_words:
            # The same words from another object (or again): the analytics still hold.
            CallAnalytics.objects.filter(pk=analytics.pk).update(source_ref=source_ref)
        if changed:
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
    made_from = Transcript.objects.filter(call=call).values_list("source_ref", flat=True).first()
    result_ref = call_result_ref(call)
    if result_ref:
        # A result the transcript was not read from (a new object, or a new version of
        # the same key: Data Automation processed the call again) is read and replaces it.
        if made_from != result_ref:
            read = result_from_s3_object(call.s3_output_uri)
            transcript_save(call=call, result=read, source_ref=result_ref)
        return "done"
    recording = call_recording_ref(call)
    if made_from is not None and made_from == recording:
        return "done"
    # No transcript yet, or one of another recording (a corrected one was notified).
    backend = get_backend()
    if backend.name != "local":
        if not recording:
            return _nothing_to_transcribe(call)
        if not call.transcription_job:
            handle = backend.start(call)
            Call.objects.filter(pk=call.pk).update(transcription_job=handle)
            call.transcription_job = handle
            _set_status(call, PipelineStatus.TRANSCRIBING)
    result = backend.fetch(call)
    if result is None:
        if made_from is not None and backend.name == "local":
            return "done"  # nothing new in storage: the transcript stands
        return _nothing_to_transcribe(call) if backend.name == "local" else "pending"
    transcript_save(call=call, result=result, source_ref=recording)
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
    re-checks. Stored analytics are kept unless they were made from another transcript
    (``source_ref``: a new recording or result replaced it); then the new ones replace
    them as a new ``version`` (a ``call.analysed`` event each). If the transcript changed
    meanwhile (an erasure redacted it, or a new result replaced it) the answer is stale:
    nothing is written and the step is retried, so the erased words never come back
    through a summary. If another run stored analytics first, theirs stand (one
    ``call.analysed`` event) and a later status is kept.
    """
    call = Call.objects.get(pk=call_id)
    existing = CallAnalytics.objects.filter(call=call).first()
    transcript = Transcript.objects.filter(call=call).first()
    current_ref = transcript.source_ref if transcript is not None else None
    if existing is not None and current_ref in (None, existing.source_ref):
        _set_status_unless_synced(call.pk, PipelineStatus.ANALYSED)
        return existing
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
    values = {
        "call_summary": analysis.summary,
        "call_categories": analysis.categories,
        "categories_by": analysis.categories_by,
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
        "fallback_from": analysis.fallback_from,
        "source_ref": transcript.source_ref,
    }
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        current = (
            Transcript.objects.filter(call=call).values("text", "segments", "source_ref").first()
        )
        if current != {
            "text": transcript.text,
            "segments": transcript.segments,
            "source_ref": transcript.source_ref,
        }:
            raise RetryableError(f"The transcript of call {call_id} changed during analysis.")
        analytics, created = CallAnalytics.objects.get_or_create(call=call, defaults=values)
        if not created and analytics.source_ref != transcript.source_ref:
            # Analytics of the words this transcript replaced: these are the new version.
            CallAnalytics.objects.filter(pk=analytics.pk).update(
                **values, version=F("version") + 1, updated_at=timezone.now()
            )
            analytics.refresh_from_db()
            created = True
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


def call_customer_words(call: Call, transcript: Transcript | None) -> str:
    """What the caller said (the transcript's ``Customer`` segments), redacted with the
    call's names; "" without a transcript or speaker names (the agent's words are not the
    customer's mood, and an unlabelled transcript cannot tell them apart)."""
    if transcript is None:
        return ""
    words = " ".join(
        str(s.get("text", "")) for s in transcript.segments if s.get("speaker") == "Customer"
    ).strip()
    return redact(words, names=call_redaction_names(call)) if words else ""


def call_interaction_record(*, call_id: int) -> bool:
    """The customer context's entry for an analysed call (kind ``call``, ``source_key``
    ``call:<contact id>``), scored from the caller's own words; a call analysed again
    (a new version) replaces its entry, never adds one. The entry names the call's
    escalation ticket when it has one, and its scope is the call (``call:<contact id>``):
    an agent is shown and counted it only if they may see the call, under the call
    page's rule (``call_visibility_q``, registered with the context as the ``call``
    scope's rule), and its ticket if it names one. Its summary says only that there was
    a call (the call's words are on the call page). No customer linked: nothing. Returns
    True when new."""
    call = Call.objects.filter(pk=call_id).first()
    if call is None or call.customer_id is None:
        return False
    transcript = Transcript.objects.filter(call=call).first()
    ticket_id = (
        Escalation.objects.filter(call=call, ticket__isnull=False)
        .order_by("created_at", "id")
        .values_list("ticket_id", flat=True)
        .first()
    )
    queue = f" ({call.queue_name})" if call.queue_name else ""
    return interaction_record(
        customer_id=call.customer_id,
        source_key=f"call:{call.contact_id}",
        channel=Channel.PHONE,
        kind=InteractionKind.CALL,
        occurred_at=call.initiated_at or call.created_at,
        summary=f"Phone call{queue}",
        ticket_id=ticket_id,
        analyse_text=call_customer_words(call, transcript),
        replace=True,
        scope=scope_make(CALL_SCOPE, call.contact_id),
    )
