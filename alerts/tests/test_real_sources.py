"""The seed rules read the names the real sources export, over the rule's window: routing
decisions in the database fire DailyCost (summed per-ticket cost over 24 h) and HighLatency
(10 min), and older rows do not count."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule
from alerts.services import alert_rules_evaluate
from routing.models import RoutingDecision
from tickets.services import ticket_create


def _decisions(customer: Any, *, cost: str, processing_ms: float, age: timedelta, n: int) -> None:
    for i in range(n):
        ticket = ticket_create(customer=customer, subject=f"T{uuid.uuid4()}", body="?")
        decision = RoutingDecision.objects.create(
            ticket=ticket,
            attempt_key="alerts",
            priority="normal",
            confidence=0.9,
            provider="local",
            processing_ms=processing_ms,
            cost_usd=Decimal(cost),
            correlation_id=uuid.uuid4(),
        )
        RoutingDecision.objects.filter(pk=decision.pk).update(
            created_at=timezone.now() - age - timedelta(seconds=i)
        )


def _only(*names: str) -> None:
    AlertRule.objects.exclude(name__in=names).update(enabled=False)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_daily_cost_sums_the_decisions_of_the_last_24_hours(customer):
    _only("DailyCost")
    _decisions(customer, cost="100", processing_ms=10, age=timedelta(hours=23), n=3)
    _decisions(customer, cost="100", processing_ms=10, age=timedelta(hours=25), n=2)
    assert alert_rules_evaluate().fired == []  # $300 in 24 h ($500 with the older ones)

    _decisions(customer, cost="50.01", processing_ms=10, age=timedelta(minutes=1), n=1)
    report = alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1))
    assert report.fired == [AlertRule.objects.get(name="DailyCost").pk]
    assert Alert.objects.get().value == pytest.approx(350.01)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_high_latency_averages_the_last_ten_minutes(customer):
    _only("HighLatency")
    _decisions(customer, cost="0", processing_ms=9000, age=timedelta(minutes=11), n=3)
    _decisions(customer, cost="0", processing_ms=1000, age=timedelta(minutes=1), n=1)
    assert alert_rules_evaluate().fired == []  # 1 s in the window (7 s with the older ones)

    _decisions(customer, cost="0", processing_ms=9500, age=timedelta(seconds=5), n=1)
    assert len(alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1)).fired) == 1
    assert Alert.objects.get().value == pytest.approx(5.25)


# --- seed 003's "Bedrock invocation failures" (CallBedrockFailures) ------------------------

BDA_ARN = "arn:aws:bedrock:us-east-1:123456789012:data-automation-invocation/8a7e4c1b"


def _data_automation_fails(monkeypatch: pytest.MonkeyPatch, settings: Any, state: str) -> Any:
    """The Data Automation backend on a stubbed client: the invocation starts, and the job
    ends in ``state``."""
    import boto3
    from botocore.stub import Stubber

    from calls import transcription

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.CALLS_TRANSCRIPTION_BACKEND = "data_automation"
    settings.CALLS_ALLOWED_S3_BUCKETS = ["recordings-example"]
    settings.CALLS_OUTPUT_BUCKET = "bda-output"
    settings.CALLS_BDA_PROJECT_ARN = (
        "arn:aws:bedrock:us-east-1:123456789012:data-automation-project/p1"
    )
    settings.CALLS_BDA_PROFILE_ARN = (
        "arn:aws:bedrock:us-east-1:123456789012:data-automation-profile/us.data-automation-v1"
    )
    client = boto3.client("bedrock-data-automation-runtime", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("invoke_data_automation_async", {"invocationArn": BDA_ARN})
    stub.add_response(
        "get_data_automation_status",
        {"status": state, "errorType": "InternalServerError", "errorMessage": "Try later"},
        {"invocationArn": BDA_ARN},
    )
    monkeypatch.setitem(
        transcription.BACKENDS,
        "data_automation",
        lambda: transcription.DataAutomationBackend(client=client),
    )
    return stub


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
@pytest.mark.parametrize("state", ["ServiceError", "ClientError"])
def test_call_bedrock_failures_fires_on_a_data_automation_job_that_failed(
    monkeypatch, settings, state
):
    """A failed Data Automation job leaves no analytics row, only the failed call: the
    rule watched an analytics status nothing stored, and never fired."""
    from calls.models import Call, CallAnalytics, PipelineStatus
    from calls.tasks import call_transcribe_task

    _only("CallBedrockFailures")
    old = Call.objects.create(
        contact_id="earlier",
        pipeline_status=PipelineStatus.FAILED,
        pipeline_error=f"Data Automation failed ({state}): an hour ago",
    )
    Call.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    call = Call.objects.create(
        contact_id="c-bda", s3_input_uri="s3://recordings-example/calls/c-bda.wav"
    )
    assert alert_rules_evaluate().fired == []  # the older failure is not in the 5 minutes

    with _data_automation_fails(monkeypatch, settings, state) as stub:
        assert call_transcribe_task(call.pk) == "failed"
        stub.assert_no_pending_responses()
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.FAILED
    assert not CallAnalytics.objects.exists()
    report = alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1))
    assert report.fired == [AlertRule.objects.get(name="CallBedrockFailures").pk]
    assert Alert.objects.get().value == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_call_bedrock_failures_fires_on_a_summary_whose_bedrock_call_fell_back():
    from calls.models import AnalyticsPath, Call, CallAnalytics
    from calls.services.pipeline import BEDROCK_FAILED

    _only("CallBedrockFailures")
    call = Call.objects.create(contact_id="c-fallback")
    CallAnalytics.objects.create(
        call=call, produced_by=AnalyticsPath.DATA_AUTOMATION, bedrock_status="Success"
    )
    assert alert_rules_evaluate().fired == []
    fallback = Call.objects.create(contact_id="c-fallback-2")
    CallAnalytics.objects.create(
        call=fallback,
        produced_by=AnalyticsPath.LOCAL,
        provider="local",
        bedrock_status=BEDROCK_FAILED,
    )
    report = alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1))
    assert report.fired == [AlertRule.objects.get(name="CallBedrockFailures").pk]


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_a_failing_source_leaves_its_rules_alerts_as_they_are(customer, monkeypatch):
    """The routing source failing (its database query refused) left DailyCost's name out
    of the collected metrics: "no data", which resolved the open alert, and it fired again
    when the source was back: two notifications per outage, and a PagerDuty incident
    closed while nothing was known. The rule is not evaluated while its source is down."""
    from django.db import OperationalError

    from support import metrics

    _only("DailyCost")
    _decisions(customer, cost="200", processing_ms=10, age=timedelta(minutes=5), n=2)
    rule = AlertRule.objects.get(name="DailyCost")
    assert alert_rules_evaluate().fired == [rule.pk]
    alert = Alert.objects.get()

    real = metrics.metric_sources()

    def down():
        raise OperationalError("the database is away")

    sources = {**real, "routing": down}
    monkeypatch.setattr(metrics, "metric_sources", lambda: sources)
    later = timezone.now() + timedelta(minutes=2)
    report = alert_rules_evaluate(now=later)
    assert (report.resolved, report.unavailable) == ([], [rule.pk])
    alert.refresh_from_db()
    assert alert.state == "firing"

    monkeypatch.setattr(metrics, "metric_sources", lambda: real)  # back: evaluated again
    report = alert_rules_evaluate(now=later + timedelta(minutes=2))
    assert (report.evaluated, report.unavailable, report.fired) == (1, [], [])
    alert.refresh_from_db()
    assert alert.state == "firing"


# --- seed 004's error rate: tickets whose routing failed outright count -------------------


def _routing_failures(customer: Any, n: int) -> None:
    from routing.services import routing_failure_record

    for _ in range(n):
        ticket = ticket_create(customer=customer, subject=f"T{uuid.uuid4()}", body="?")
        routing_failure_record(ticket_id=ticket.pk, exc=TimeoutError("provider away"))


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_a_total_routing_outage_fires_the_critical_error_rate(customer):
    """Every ticket's routing failed outright: no decision, so provider errors / tickets
    processed read 0/0 (no data) and no alarm fired. Failed tickets count as errors and
    as tickets: 100% > 10%."""
    _only("CriticalErrorRate")
    _routing_failures(customer, 3)
    report = alert_rules_evaluate()
    rule = AlertRule.objects.get(name="CriticalErrorRate")
    assert report.fired == [rule.pk]
    alert = Alert.objects.get()
    assert (alert.severity, alert.value) == ("critical", 1.0)


@pytest.mark.django_db
@pytest.mark.usefixtures("seed_rules")
def test_normal_routing_fires_no_error_rate_alarm(customer):
    _only("HighErrorRate", "CriticalErrorRate", "WarningErrorRate")
    _decisions(customer, cost="0", processing_ms=10, age=timedelta(seconds=5), n=20)
    report = alert_rules_evaluate()
    assert (report.evaluated, report.fired) == (3, [])
    # one failure among 20 decisions: 1/21 < 5%
    _routing_failures(customer, 1)
    assert alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1)).fired == []
    assert not Alert.objects.exists()
