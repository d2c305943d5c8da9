"""Seed 003's call pipeline metrics for ``GET /metrics`` (registered in ``CallsConfig.ready``).

Seed 003 asks for events, failures, DLQ depth and Bedrock failures. Here: records received
(``support_call_events`` by source and status); records that failed to apply, kept for
inspection and retried when sent again (``support_call_events_failed``: the dead-letter
queue's depth, all of them whenever they came, not only the window's); calls by
pipeline status (``support_calls`` with status ``failed``); and
the analytics results by the path that produced them and the Bedrock status it returned
(``support_call_analytics``). Seed 003's Bedrock failures are
``support_call_bedrock_failures`` (the ``CallBedrockFailures`` alarm): the analyses whose
Bedrock call failed and fell back to the local analysis (stored with
``bedrock_status="Failed"``), plus the calls Bedrock Data Automation failed (its invocation
refused, or the job ended in ``ServiceError``/``ClientError``): those leave no analytics,
only the failed call, whose ``pipeline_error`` starts with ``calls.transcription.BDA_FAILURE``.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import Metric

from calls.models import Call, CallAnalytics, CallEvent, EventStatus, PipelineStatus
from calls.services.sweeps import call_pipelines_stalled
from calls.transcription import BDA_FAILURE
from support.metrics import gauge, window_start

#: Bedrock statuses that are failures: ours (calls.services.pipeline.BEDROCK_FAILED) and
#: Bedrock Data Automation's error states.
BEDROCK_FAILURES = ("Failed", "ServiceError", "ClientError")


def call_metrics() -> Iterator[Metric]:
    since = window_start()
    events = gauge(
        "call_events",
        "Call records (contact events, CTRs, recordings, S3 ...) received in the window, "
        "by source and status.",
        ["source", "status"],
    )
    recent = CallEvent.objects.filter(created_at__gte=since)  # created_at index
    for row in recent.values("source", "status").annotate(n=Count("pk")).order_by():
        events.add_metric([row["source"], row["status"]], row["n"])
    yield events

    # A level, not a window: seed 003's alarm is the dead-letter queue's depth ("SQS DLQ
    # message count > 0"), in alarm while anything waits there, however old (as
    # support_deliveries_dead_letters). Partial index callevent_failed_idx.
    failed = gauge(
        "call_events_failed",
        "Call records that failed to apply and wait for a redelivery or a person, "
        "however long ago they came (seed 003's dead-letter queue depth).",
    )
    failed.add_metric([], CallEvent.objects.filter(status=EventStatus.FAILED).count())
    yield failed

    calls = gauge("calls", "Calls recorded in the window, by pipeline status.", ["status"])
    # created_at, not initiated_at: a call recorded now may have started long ago (a CTR
    # replayed, the demo's calls). Index call_created_idx: calls are kept for good.
    started = Call.objects.filter(created_at__gte=since)
    for row in started.values("pipeline_status").annotate(n=Count("pk")).order_by():
        calls.add_metric([row["pipeline_status"]], row["n"])
    yield calls

    # A level, like the dead letters: calls the pipeline sweep restarts (a lost chain).
    # Partial index call_pipeline_open_idx: the few calls in a non-final status.
    stalled = gauge(
        "calls_stalled",
        "Calls left in a non-final pipeline status past the sweep's threshold, whose chain "
        "was lost; the pipeline sweep (beat calls-pipeline-sweep) starts them again.",
    )
    stalled.add_metric([], call_pipelines_stalled().count())
    yield stalled

    analytics = gauge(
        "call_analytics",
        "Call analytics produced in the window, by path, provider and Bedrock status.",
        ["produced_by", "provider", "bedrock_status"],
    )
    rows = (
        CallAnalytics.objects.filter(created_at__gte=since)
        .values("produced_by", "provider", "bedrock_status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    bedrock_failed = 0
    for row in rows:
        analytics.add_metric([row["produced_by"], row["provider"], row["bedrock_status"]], row["n"])
        if row["bedrock_status"] in BEDROCK_FAILURES:
            bedrock_failed += row["n"]
    yield analytics

    # A failed call's updated_at is when it failed (calls.tasks._fail). Partial index
    # call_failed_idx: the few failed calls, by that time.
    data_automation_failed = Call.objects.filter(
        pipeline_status=PipelineStatus.FAILED,
        updated_at__gte=since,
        pipeline_error__startswith=BDA_FAILURE,
    ).count()
    failures = gauge(
        "call_bedrock_failures",
        "Bedrock failures of the call pipeline in the window (seed 003): analyses whose "
        "Bedrock call failed (the local analysis stood in) or whose stored Bedrock status is "
        "an error, and calls that Bedrock Data Automation failed.",
    )
    failures.add_metric([], bedrock_failed + data_automation_failed)
    yield failures
