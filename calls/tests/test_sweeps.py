"""Nothing received is lost when a task or a chain is: call events whose processing
failed, pipelines left in a non-final status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from calls import services, tasks
from calls.models import Call, CallEvent, EventStatus, PipelineStatus, contact_hash
from support.delivery.models import Delivery
from support.models import DeliveryStatus

pytestmark = pytest.mark.django_db

CONTACT = "11111111-2222-3333-4444-555555555555"


def contact_event(event_id: str = "evt-1", contact: str = CONTACT) -> bytes:
    return json.dumps(
        {
            "version": "0",
            "id": event_id,
            "detail-type": "Amazon Connect Contact Event",
            "source": "aws.connect",
            "time": "2026-11-01T10:00:00Z",
            "detail": {
                "eventType": "INITIATED",
                "contactId": contact,
                "channel": "VOICE",
                "initiationMethod": "INBOUND",
                "initiationTimestamp": "2026-11-01T10:00:00Z",
            },
        }
    ).encode()


def age(model: Any, pk: int, seconds: float, field: str = "updated_at") -> None:
    model.objects.filter(pk=pk).update(**{field: timezone.now() - timedelta(seconds=seconds)})


# --- call events ----------------------------------------------------------------------------


def test_call_event_processing_retries_when_the_database_goes_away(calls_settings: Any) -> None:
    (event_id,) = services.call_events_intake(body=contact_event(), schedule=False).accepted
    with mock.patch(
        "calls.services.intake._apply",
        side_effect=[OperationalError("failover"), EventStatus.PROCESSED],
    ) as apply:
        result = tasks.call_event_process_task.apply(args=(event_id,), throw=False)
    assert result.state == "SUCCESS"
    assert apply.call_count == 2
    assert CallEvent.objects.get(pk=event_id).status == EventStatus.PROCESSED


def test_call_event_left_received_after_a_task_failure_is_swept(calls_settings: Any) -> None:
    (event_id,) = services.call_events_intake(body=contact_event(), schedule=False).accepted
    (fresh_id,) = services.call_events_intake(
        body=contact_event("evt-2", "22222222-2222-3333-4444-555555555555"), schedule=False
    ).accepted
    with mock.patch("calls.services.intake._apply", side_effect=OperationalError("failover")):
        # The last retry (its backoff tested above).
        result = tasks.call_event_process_task.apply(args=(event_id,), retries=3, throw=False)
    assert result.state == "FAILURE"  # its retries ran out: the event is still received
    assert CallEvent.objects.get(pk=event_id).status == EventStatus.RECEIVED
    age(CallEvent, event_id, 121, "created_at")

    with mock.patch.object(tasks.call_event_process_task, "delay") as delay:
        assert services.call_events_sweep() == 1
    delay.assert_called_once_with(event_id)  # the fresh one is left to its own task
    tasks.call_event_process_task.apply(args=(event_id,))
    assert CallEvent.objects.get(pk=event_id).status == EventStatus.PROCESSED
    assert Call.objects.filter(contact_id=CONTACT).exists()

    # Processed: never swept again; on connect (0) the fresh one is taken too.
    with mock.patch.object(tasks.call_event_process_task, "delay") as delay:
        assert services.call_events_sweep(stale_seconds=0) == 1
    delay.assert_called_once_with(fresh_id)
    # Applied twice (the sweep and a late task): the event is claimed, applied once.
    assert services.call_event_process(event_id=event_id) == EventStatus.PROCESSED


def test_the_call_events_sweep_runs_on_beat_and_on_connect() -> None:
    from support.celery import ON_CONNECT_TASKS

    entry = settings.CELERY_BEAT_SCHEDULE["calls-events-sweep"]
    assert entry == {"task": "calls.tasks.call_events_sweep_task", "schedule": 60.0}
    assert ("calls.tasks.call_events_sweep_task", {"stale_seconds": 0}) in ON_CONNECT_TASKS
    entry = settings.CELERY_BEAT_SCHEDULE["calls-pipeline-sweep"]
    assert entry == {"task": "calls.tasks.call_pipelines_sweep_task", "schedule": 300.0}
    retried = getattr(tasks.call_event_process_task, "autoretry_for", ())
    assert retried == (OperationalError, InterfaceError)


# --- pipelines ------------------------------------------------------------------------------


def test_call_pipeline_failed_with_a_reason_when_polls_run_out(calls_settings: Any) -> None:
    calls_settings.CALLS_TRANSCRIBE_POLL_SECONDS = 30
    call = Call.objects.create(
        contact_id="c-poll-1", pipeline_status="transcribing", transcription_job="job-1"
    )
    with mock.patch("calls.services.call_transcribe", return_value="pending"):
        result = tasks.call_transcribe_task.apply(args=(call.pk,), retries=120, throw=False)
    assert (result.state, result.result) == ("SUCCESS", "failed")
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.FAILED
    assert call.pipeline_error.startswith("Still transcribing after 120 polls (60 minutes)")


def test_a_step_whose_retries_run_out_fails_the_call_with_the_reason() -> None:
    """A retryable error on a step's last retry left the call in its step: the pipeline
    sweep restarted it every quarter of an hour, and nobody was told why."""
    from support.errors import RetryableError

    call = Call.objects.create(contact_id="c-gone-1", pipeline_status="transcribed")
    down = RetryableError("Bedrock throttled the request")
    with mock.patch("calls.services.call_analyse", side_effect=down):
        result = tasks.call_analyse_task.apply(args=(call.pk,), retries=5, throw=False)
    assert (result.state, result.result) == ("SUCCESS", False)
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.FAILED
    assert call.pipeline_error == "Gave up after 6 attempts: Bedrock throttled the request"
    other = Call.objects.create(contact_id="c-gone-2", pipeline_status="transcribing")
    with mock.patch("calls.services.call_transcribe", side_effect=down):
        result = tasks.call_transcribe_task.apply(args=(other.pk,), retries=120, throw=False)
    assert (result.state, result.result) == ("SUCCESS", "failed")
    other.refresh_from_db()
    assert other.pipeline_status == PipelineStatus.FAILED


def _step_fails(task_name: str, service: str, status: str, exc: Exception) -> Call:
    call = Call.objects.create(contact_id=f"c-{task_name}", pipeline_status=status)
    with mock.patch(f"calls.services.{service}", side_effect=exc):
        result = getattr(tasks, task_name).apply(args=(call.pk,), throw=False)
    assert result.state == "FAILURE"  # raised again: the worker logs it, the chain stops
    assert type(result.result) is type(exc)
    call.refresh_from_db()
    return call


@pytest.mark.parametrize(
    ("task_name", "service", "status", "exc", "reason"),
    [
        (
            "call_analyse_task",
            "call_analyse",
            "transcribed",
            KeyError("speaker"),
            "Analysis: unexpected error KeyError: 'speaker'",
        ),
        (
            "call_transcribe_task",
            "call_transcribe",
            "received",
            SoftTimeLimitExceeded(),
            "Transcription: did not finish within its time limit (60 s).",
        ),
        # The Case step builds a delivery (the engine records its sends, dead letters
        # included); an error before the delivery exists is recorded on the call.
        (
            "call_salesforce_case_task",
            "call_salesforce_case",
            "analysed",
            ValueError("Type too long"),
            "Salesforce Case: unexpected error ValueError: Type too long",
        ),
    ],
    ids=["analyse-KeyError", "transcribe-soft-time-limit", "salesforce-case-ValueError"],
)
def test_a_step_that_fails_unexpectedly_fails_the_call_with_the_reason(
    salesforce: Any, task_name: str, service: str, status: str, exc: Exception, reason: str
) -> None:
    """The steps retry only RetryableError: any other error (a bug such as a KeyError,
    the soft time limit) ended the task and left the call in its step with no error, and
    the pipeline sweep restarted it every quarter of an hour for ever. Now the call is
    failed with the reason (the admin's "Failed" filter, "Re-run the pipeline")."""
    call = _step_fails(task_name, service, status, exc)
    assert (call.pipeline_status, call.pipeline_error) == (PipelineStatus.FAILED, reason)
    assert Delivery.objects.count() == 0


def test_a_step_that_loses_the_database_leaves_the_call_to_the_sweep(calls_settings: Any) -> None:
    """The database gone is not the call's fault (and nothing could be written): left to
    the pipeline sweep, which restarts it a bounded number of times (below)."""
    gone = OperationalError("server closed the connection unexpectedly")
    call = _step_fails("call_analyse_task", "call_analyse", "transcribed", gone)
    assert (call.pipeline_status, call.pipeline_error) == (PipelineStatus.TRANSCRIBED, "")


def _stalled_gauge() -> float:
    from calls.metrics import call_metrics

    (family,) = [f for f in call_metrics() if f.name == "support_calls_stalled"]
    (sample,) = family.samples
    return sample.value


def test_a_call_whose_chain_keeps_dying_is_restarted_a_bounded_number_of_times_then_failed(
    calls_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A chain that dies without a word (a killed worker, a hard time limit, the database
    gone) left the call in its step: the sweep restarted it every 15 minutes for ever,
    counting nothing, and support_calls_stalled read 0 right after each run (the restart
    touched updated_at), so an alarm on it flapped. Now each restart is counted
    (``support.sweeps.RedrivePolicy``), the call stays counted as stalled until it moves,
    and after 4 restarts it is given up: failed, with the reason."""
    from calls.services import sweeps

    call = _call("dies", "transcribed", 901)
    assert _stalled_gauge() == 1
    with mock.patch("calls.tasks.call_pipeline_start") as start:  # the chain dies
        for n in range(1, 5):
            assert services.call_pipelines_sweep() == 1
            assert _stalled_gauge() == 1  # still stalled: no flapping alarm
            assert services.call_pipelines_sweep() == 0  # the wait after a restart
            call.refresh_from_db()
            assert (call.pipeline_status, call.attempts) == ("transcribed", n)
            wait = sweeps.PIPELINE_REDRIVE.wait(n, sweeps.PIPELINE_SWEEP_STALE_SECONDS)
            assert wait == 900 * 2 ** (n - 1)  # 15, 30, 60, 120 minutes
            age(Call, call.pk, wait - 60, "attempted_at")
            assert services.call_pipelines_sweep() == 0
            age(Call, call.pk, wait + 1, "attempted_at")
        assert services.call_pipelines_sweep() == 0  # given up, not restarted
    assert start.call_count == sweeps.PIPELINE_SWEEP_MAX_RESTARTS == 4
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.FAILED
    assert call.pipeline_error == (
        "gave up after 4 re-drives: the call stayed transcribed after each restart: its "
        "chain never finished (a killed worker, a hard time limit or the database gone; "
        "see the workers' log)"
    )
    assert _stalled_gauge() == 0
    assert f"Call {call.pk} pipeline given up" in caplog.text

    # The admin's re-run (or a new event) starts the count again.
    services.call_pipeline_restarts_reset(call_ids=[call.pk])
    call.refresh_from_db()
    assert (call.attempts, call.attempted_at) == (0, None)


def test_a_restarted_call_that_moves_on_leaves_the_stalled_calls(
    calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from calls.tests.conftest import load, place_result

    place_result("moves", "transcribe.json", load("transcribe_billing.json"))
    call = _call("moves", "received", 901, raw={"ContactId": "moves"})
    assert services.call_pipelines_sweep() == 1  # the chain runs (eager)
    call.refresh_from_db()
    assert (call.pipeline_status, call.attempts) == (PipelineStatus.ANALYSED, 1)
    assert _stalled_gauge() == 0

    # A new event starts the chain: the sweep's count starts again.
    with django_capture_on_commit_callbacks(execute=False):
        services.call_pipeline_schedule(call)
    call.refresh_from_db()
    assert (call.attempts, call.attempted_at) == (0, None)


def test_a_restarted_transcribing_call_is_left_its_polling_window(
    calls_settings: Any, salesforce: Any
) -> None:
    """Its restarted chain polls the job again (120 polls): not restarted on top of it.
    (Salesforce on: the stalled condition's Case subquery holds in the counting update.)"""
    calls_settings.CALLS_TRANSCRIBE_POLL_SECONDS = 30
    window = 901 + 120 * 30
    call = _call("slow-job", "transcribing", window, transcription_job="j1")
    unsent = _call("unsent-case", "analysed", 901)
    with mock.patch("calls.tasks.call_pipeline_start") as start:
        assert services.call_pipelines_sweep() == 2
        age(Call, call.pk, 3600, "attempted_at")  # past 15 and 30 minutes
        age(Call, unsent.pk, 3600, "attempted_at")
        assert services.call_pipelines_sweep() == 1  # the Case step only
        age(Call, call.pk, window, "attempted_at")
        assert services.call_pipelines_sweep() == 1
    assert [c.args[0] for c in start.call_args_list] == [call.pk, unsent.pk, unsent.pk, call.pk]
    assert Call.objects.get(pk=call.pk).attempts == 2


def _call(contact: str, status: str, stale: float, **fields: Any) -> Call:
    call = Call.objects.create(contact_id=contact, pipeline_status=status, **fields)
    age(Call, call.pk, stale)
    return call


def test_pipeline_sweep_restarts_calls_whose_chain_was_lost(
    calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    calls_settings.CALLS_TRANSCRIBE_POLL_SECONDS = 30
    old, window = 901, 901 + 120 * 30
    ctr = {"ContactId": "x"}
    lost = [
        _call("received-ctr", "received", old, raw=ctr),
        _call("received-note", "received", old, s3_input_uri="s3://b/a.wav"),
        _call("transcribed", "transcribed", old),
        _call("transcribing-long", "transcribing", window, transcription_job="j1"),
        _call("awaiting-result", "awaiting_recording", old, s3_output_uri="s3://b/r.json"),
    ]
    kept = [
        _call("received-fresh", "received", 60, raw=ctr),
        _call("received-events-only", "received", old),  # waits for its record
        _call("transcribing-polling", "transcribing", old, transcription_job="j2"),
        _call("awaiting", "awaiting_recording", old),
        _call("analysed", "analysed", old),  # final while Salesforce is off
        _call("synced", "synced", old),
        _call("failed", "failed", old),
        _call("none", "no_recording", old),
    ]
    assert set(services.call_pipelines_stalled()) == set(lost)
    with (
        mock.patch("calls.tasks.call_pipeline_start") as start,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.call_pipelines_sweep() == len(lost)
    assert sorted(c.args[0] for c in start.call_args_list) == sorted(c.pk for c in lost)
    assert kept  # (left alone above)

    # Restarted: left alone for the same period; a chain that runs moves the call on.
    with (
        mock.patch("calls.tasks.call_pipeline_start") as start,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.call_pipelines_sweep() == 0
    start.assert_not_called()


def test_pipeline_sweep_runs_the_chain_to_the_end(
    calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from calls.tests.conftest import load, place_result

    place_result("lost-chain", "transcribe.json", load("transcribe_billing.json"))
    call = _call("lost-chain", "received", 901, raw={"ContactId": "lost-chain"})
    with django_capture_on_commit_callbacks(execute=True):
        assert services.call_pipelines_sweep() == 1
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.ANALYSED


def test_pipeline_sweep_sends_the_case_of_an_analysed_call_left_unsent(
    salesforce: Any, django_capture_on_commit_callbacks: Any
) -> None:
    unsent = _call("unsent", "analysed", 901)
    pending = _call("pending", "analysed", 901)
    sent_again = _call("sent", "analysed", 901)
    for call, status in ((pending, DeliveryStatus.PENDING), (sent_again, "succeeded")):
        Delivery.objects.create(
            target_kind="salesforce",
            idempotency_key=f"case:{call.contact_id}",
            subject_type="call",
            subject_id=str(call.pk),
            payload={"sobject": "Case", "fields": {}},
            status=status,
        )
    # A Case still being delivered (or a dead letter) belongs to the delivery engine.
    assert set(services.call_pipelines_stalled()) == {unsent, sent_again}


def test_a_case_already_sent_with_the_same_fields_makes_the_call_synced(
    salesforce: Any,
) -> None:
    from calls.models import CallAnalytics

    call = _call("resent", "analysed", 0)
    CallAnalytics.objects.create(call=call, produced_by="local", call_summary="Refund asked.")
    delivery = services.call_salesforce_case(call_id=call.pk)
    assert delivery is not None
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SUCCEEDED)
    # The chain again (the sweep, a re-run): nothing new to send, and the Case holds it.
    assert services.call_salesforce_case(call_id=call.pk) == delivery
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.SYNCED
    assert Delivery.objects.count() == 1


def lost(n: int, hours_ago: float) -> int:
    """A call event whose task was lost, recorded ``hours_ago``."""
    contact = f"{n:08d}-2222-3333-4444-555555555555"
    (event_id,) = services.call_events_intake(
        body=contact_event(f"evt-lost-{n}", contact), schedule=False
    ).accepted
    age(CallEvent, event_id, hours_ago * 3600, "created_at")
    return event_id


def wait_over(*ids: int) -> None:
    """As if the sweep's wait after its last re-drive of ``ids`` were over."""
    for pk in ids:
        age(CallEvent, pk, 86400, "attempted_at")


def test_a_call_event_that_never_applies_is_re_driven_a_bounded_number_of_times_then_failed(
    calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from calls.services import sweeps

    event_id = lost(1, 3)
    queued: list[int] = []
    with (
        mock.patch("calls.services.intake._apply", side_effect=RuntimeError("boom")),
        mock.patch.object(tasks.call_event_process_task, "delay", side_effect=queued.append),
    ):
        # An error call_event_process does not record (a bug; a time limit alike).
        assert tasks.call_event_process_task.apply(args=(event_id,), throw=False).failed()
        for _ in range(sweeps.EVENTS_SWEEP_MAX_REDRIVES + 3):
            services.call_events_sweep()
            tasks.call_event_process_task.apply(args=(event_id,), throw=False)
            wait_over(event_id)
    assert queued == [event_id] * sweeps.EVENTS_SWEEP_MAX_REDRIVES
    event = CallEvent.objects.get(pk=event_id)
    assert event.status == EventStatus.FAILED  # a dead letter: metrics, the admin's re-drive
    assert event.attempts == sweeps.EVENTS_SWEEP_MAX_REDRIVES
    assert event.error == "gave up after 5 re-drives: last try: RuntimeError: boom"
    assert event.processed_at is not None

    # A supervisor re-drives it once the bug is fixed: applied; the count starts again.
    staff = mock.Mock(get_username=lambda: "sup")
    with (
        mock.patch("calls.services.intake.audit_log_record"),
        mock.patch.object(tasks.call_event_process_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.call_event_redrive(event=event, actor=staff)
    delay.assert_called_once_with(event_id)
    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == (EventStatus.RECEIVED, 0, "")
    with mock.patch.object(tasks.call_event_process_task, "delay") as delay:
        assert services.call_events_sweep(stale_seconds=0) == 0  # its task is queued
    delay.assert_not_called()


def test_events_that_never_apply_do_not_keep_a_newer_lost_event_from_its_turn(
    calls_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calls.services import sweeps

    poison = [lost(1, 3), lost(2, 2)]
    newer = lost(3, 1)
    monkeypatch.setattr(sweeps, "EVENTS_SWEEP_BATCH", 2)
    queued: list[int] = []
    with mock.patch.object(tasks.call_event_process_task, "delay", side_effect=queued.append):
        assert services.call_events_sweep() == 2  # the oldest two fill the batch
        assert services.call_events_sweep() == 1  # a minute later: they wait; its turn
    assert queued == [*poison, newer]


def test_on_connect_an_event_re_driven_seconds_ago_is_not_queued_again(
    calls_settings: Any,
) -> None:
    from calls.services import sweeps

    event_id = lost(1, 1)
    with mock.patch.object(tasks.call_event_process_task, "delay") as delay:
        assert services.call_events_sweep() == 1
        # The beat's sweeps queued while the workers were down, and the one sent on
        # connect, run within seconds: the event's task is still waiting in the queue.
        assert services.call_events_sweep() == 0
        assert services.call_events_sweep(stale_seconds=0) == 0
        age(CallEvent, event_id, sweeps.EVENTS_SWEEP_REDRIVE_FLOOR_SECONDS + 1, "attempted_at")
        assert services.call_events_sweep() == 0  # the beat waits 2 minutes
        assert services.call_events_sweep(stale_seconds=0) == 1  # on connect, 1 minute
    assert delay.call_count == 2
    assert CallEvent.objects.get(pk=event_id).attempts == 2


def test_the_sweeps_and_the_stalled_calls_gauge_read_their_partial_indexes(
    settings: Any,
) -> None:
    """Neither reads every event or every call (a full scan each minute, and on every
    /metrics scrape). The test tables are small, so sequential scans are priced out to
    see that the planner can use the indexes for these query shapes."""
    from django.db import connection

    from calls.services import sweeps

    # Tables shaped like production's: nearly every event processed, nearly every call
    # done, their statistics read. Without this the planner's choice between the partial
    # index and the created_at / initiated_at indexes on a near-empty table went either
    # way from run to run.
    CallEvent.objects.bulk_create(
        CallEvent(source="ctr", external_id=f"done-{i}", status="processed") for i in range(3000)
    )
    CallEvent.objects.bulk_create(
        CallEvent(source="ctr", external_id=f"open-{i}", status="received") for i in range(3)
    )
    Call.objects.bulk_create(
        Call(contact_id=f"done-{i}", hash=contact_hash(f"done-{i}"), pipeline_status="synced")
        for i in range(3000)
    )
    Call.objects.bulk_create(
        Call(contact_id=f"open-{i}", hash=contact_hash(f"open-{i}"), pipeline_status="transcribing")
        for i in range(3)
    )
    an_hour_ago = timezone.now() - timedelta(hours=1)  # older than any sweep's wait
    CallEvent.objects.update(created_at=an_hour_ago)
    Call.objects.update(updated_at=an_hour_ago)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE calls_callevent")
        cursor.execute("ANALYZE calls_call")
        cursor.execute("SET LOCAL enable_seqscan = off")
    for stale_seconds in (sweeps.EVENTS_SWEEP_STALE_SECONDS, 0):
        due = sweeps._call_events_due(stale_seconds=stale_seconds, now=timezone.now())
        assert "callevent_received_idx" in due.values_list("id")[:500].explain()
    for salesforce in (False, True):
        settings.SALESFORCE_ENABLED = salesforce
        stalled = sweeps.call_pipelines_stalled()
        assert "call_pipeline_open_idx" in stalled.order_by().explain()  # the gauge's count
        oldest = stalled.order_by("updated_at", "id").values_list("id")[:100]
        assert "call_pipeline_open_idx" in oldest.explain()
        restartable = stalled.filter(sweeps._pipelines_due_q(timezone.now()))
        restartable = restartable.order_by("updated_at", "id")
        assert "call_pipeline_open_idx" in restartable.values_list("id")[:100].explain()


def test_a_broker_refusing_the_re_drive_stops_the_run_without_queueing_uncounted(
    calls_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each re-drive is counted before its task is queued (``support.sweeps``): the broker
    refusing one stops the run, logged, instead of failing it with every event of the
    batch counted and none queued; the event refused is queued again after its wait."""
    from kombu.exceptions import OperationalError as BrokerDown

    first, second = lost(1, 2), lost(2, 1)
    down = BrokerDown("Error 111 connecting to redis:6379. Connection refused.")
    with mock.patch.object(tasks.call_event_process_task, "delay", side_effect=down) as delay:
        assert services.call_events_sweep() == 0
    delay.assert_called_once_with(first)
    attempts = dict(CallEvent.objects.filter(pk__in=[first, second]).values_list("pk", "attempts"))
    assert attempts == {first: 1, second: 0}
    assert "Call events sweep: the broker is unreachable (OperationalError)" in caplog.text

    wait_over(first)  # the broker is back
    with mock.patch.object(tasks.call_event_process_task, "delay") as delay:
        assert services.call_events_sweep() == 2
    assert [c.args for c in delay.call_args_list] == [(first,), (second,)]
