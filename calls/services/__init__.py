"""Writes and side effects of call analytics: intake, the per-call pipeline steps, IVR
escalations, agent states and alerts, Salesforce deliveries.

Every step is idempotent through a natural key (contact id, event id, (call, kind),
delivery key), so at-least-once delivery and re-running a pipeline are safe.

One module per concern; this package re-exports the public names (``calls.services.X``
keeps working for tasks, views, the admin and other apps). Patch a name in a test where
it is defined and looked up (e.g. ``calls.services.agents``), not here.

- ``intake``: call events recorded once, then applied to call records.
- ``pipeline``: transcription and analytics of one call.
- ``ivr``: IVR journeys and escalations.
- ``salesforce``: the Case and Task records, through the delivery engine.
- ``agents``: agent states and alerts (SNS through the delivery engine).
- ``sweeps``: the backstops for call events and pipelines whose task or chain was lost.
"""

from __future__ import annotations

from calls.services.agents import (
    SNS_ALERT_KIND,
    agent_event_apply,
    alert_acknowledge,
    alert_raise,
    alert_sns_delivery_create,
    alert_sns_publish,
    alert_sns_send,
    alert_sns_target_kind,
    alerts_evaluate,
)
from calls.services.intake import (
    IntakeResult,
    call_event_attempt_failed,
    call_event_close,
    call_event_process,
    call_event_redrive,
    call_events_intake,
    call_record_ingest,
    call_recording_notified,
    call_upsert,
    s3_result_created,
)
from calls.services.ivr import call_journey_assess, escalation_create
from calls.services.pipeline import (
    call_analyse,
    call_interaction_record,
    call_pipeline_rerun,
    call_pipeline_restarts_reset,
    call_pipeline_schedule,
    call_transcribe,
    transcript_save,
)
from calls.services.salesforce import (
    SALESFORCE_KIND,
    call_salesforce_case,
    salesforce_deliveries,
    salesforce_delivery_create,
    salesforce_record_send,
    salesforce_target_kind,
)
from calls.services.sweeps import (
    call_events_sweep,
    call_pipelines_stalled,
    call_pipelines_sweep,
)

__all__ = [
    "SALESFORCE_KIND",
    "SNS_ALERT_KIND",
    "IntakeResult",
    "agent_event_apply",
    "alert_acknowledge",
    "alert_raise",
    "alert_sns_delivery_create",
    "alert_sns_publish",
    "alert_sns_send",
    "alert_sns_target_kind",
    "alerts_evaluate",
    "call_analyse",
    "call_event_attempt_failed",
    "call_event_close",
    "call_event_process",
    "call_event_redrive",
    "call_events_intake",
    "call_events_sweep",
    "call_interaction_record",
    "call_journey_assess",
    "call_pipeline_rerun",
    "call_pipeline_restarts_reset",
    "call_pipeline_schedule",
    "call_pipelines_stalled",
    "call_pipelines_sweep",
    "call_record_ingest",
    "call_recording_notified",
    "call_salesforce_case",
    "call_transcribe",
    "call_upsert",
    "escalation_create",
    "s3_result_created",
    "salesforce_deliveries",
    "salesforce_delivery_create",
    "salesforce_record_send",
    "salesforce_target_kind",
    "transcript_save",
]
