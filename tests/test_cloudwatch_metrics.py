"""Optional CloudWatch publishing (support/cloudwatch.py), against moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from support.aws import aws_clients_clear
from support.cloudwatch import cloudwatch_metrics_publish
from support.tasks import cloudwatch_metrics_publish_task
from tests.test_metrics import feed

pytestmark = pytest.mark.django_db


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.CLOUDWATCH_METRICS_REGION = "us-east-1"
    settings.CLOUDWATCH_METRICS_NAMESPACE = "SupportDeskTest"
    aws_clients_clear()
    with mock_aws():
        import boto3

        yield boto3.client("cloudwatch", region_name="us-east-1")
    aws_clients_clear()


def published(cloudwatch: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, dimensions): latest value} as moto stored them."""
    values = {}
    for metric in cloudwatch.list_metrics(Namespace="SupportDeskTest")["Metrics"]:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
        stats = cloudwatch.get_metric_statistics(
            Namespace="SupportDeskTest",
            MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"],
            StartTime="2000-01-01T00:00:00Z",
            EndTime="2100-01-01T00:00:00Z",
            Period=60,
            Statistics=["Maximum"],
        )
        values[(metric["MetricName"], dims)] = max(p["Maximum"] for p in stats["Datapoints"])
    return values


def test_off_by_default_sends_nothing(aws: Any, settings: Any) -> None:
    assert settings.CLOUDWATCH_METRICS_ENABLED is False
    assert "cloudwatch-metrics-publish" not in settings.CELERY_BEAT_SCHEDULE
    assert cloudwatch_metrics_publish_task() == 0
    assert aws.list_metrics(Namespace="SupportDeskTest")["Metrics"] == []


def test_publishes_the_metrics_and_the_seed_names(aws: Any, settings: Any, customer: Any) -> None:
    settings.CLOUDWATCH_METRICS_ENABLED = True
    feed(customer)
    sent = cloudwatch_metrics_publish_task()
    values = published(aws)
    assert sent == len(values)
    assert values[("TicketsProcessed", ())] == 4
    assert values[("BedrockAPIErrors", ())] == 1
    assert values[("TicketingSystemSyncFailures", ())] == 2  # failed attempts (feed)
    # Seed 004: "Percentage requiring manual review", "Percentage of correct routings".
    assert values[("ManualReviewRate", ())] == 50.0
    assert values[("RoutingAccuracy", ())] == 50.0
    assert values[("routing_manual_review_rate", ())] == 0.5  # the gauge's own name: 0-1
    assert values[("ProcessingTime", ())] == pytest.approx(3.852 / 4)
    assert values[("routing_tickets_processed", (("provider", "bedrock"),))] == 2
    assert values[("routing_processing_seconds_count", ())] == 4
    assert values[("call_events_failed", ())] == 1
    # Per-process request counters are Prometheus's, not CloudWatch's.
    assert not [name for name, _ in values if name.startswith(("http_", "websocket_"))]


def test_a_failed_publish_is_logged_and_dropped(
    aws: Any, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    class Refusing:
        def put_metric_data(self, **kwargs: Any) -> None:
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError(error, "PutMetricData")  # type: ignore[arg-type]

    monkeypatch.setattr("support.cloudwatch.aws_client", lambda *a, **k: Refusing())
    settings.CLOUDWATCH_METRICS_ENABLED = True
    assert cloudwatch_metrics_publish() == 0
    assert "CloudWatch metrics not published" in caplog.text


def test_counts_cover_the_publishing_interval_and_levels_stay_levels(
    aws: Any, settings: Any, customer: Any
) -> None:
    """Seed 004's "> 10 failed syncs in 5 minutes" is a CloudWatch Sum over 5 minutes of
    the published values: each must count its interval only, not the scrape's 24 hours
    (re-sent every minute, one failure would be summed five times)."""
    from datetime import timedelta

    from django.utils import timezone

    from routing.models import RoutingDecision, SyncStatus
    from support.delivery.models import Attempt, Delivery

    settings.CLOUDWATCH_METRICS_ENABLED = True
    settings.CLOUDWATCH_METRICS_INTERVAL_SECONDS = 60
    assert settings.METRICS_WINDOW_SECONDS == 86400
    feed(customer)
    earlier = timezone.now() - timedelta(minutes=10)
    # The failed sync's decision, every delivery and every attempt (the failed syncs): in
    # the last 24 h, not the last minute.
    RoutingDecision.objects.filter(sync_status=SyncStatus.FAILED).update(created_at=earlier)
    Delivery.objects.update(created_at=earlier)
    Attempt.objects.filter(created_at__gt=earlier).update(created_at=earlier)
    cloudwatch_metrics_publish()
    values = published(aws)
    assert values[("TicketingSystemSyncFailures", ())] == 0
    assert values[("routing_sync_failures", ())] == 0
    assert values[("TicketsProcessed", ())] == 3
    assert not [name for name, _ in values if name == "deliveries"]
    # A level is not windowed: the dead letter still waits for a re-drive.
    assert values[("deliveries_dead_letters", (("kind", "channel_reply"),))] == 1


def test_seed_rates_are_sent_as_percentages() -> None:
    """Seed 004: ``ManualReviewRate`` "Percentage requiring manual review" (alarm "> 30%"),
    ``RoutingAccuracy`` "Percentage of correct routings". Before: the fraction, no Unit."""
    from datetime import UTC, datetime

    from prometheus_client.core import GaugeMetricFamily

    from support.cloudwatch import metric_data

    review = GaugeMetricFamily("support_routing_manual_review_rate", "", value=0.4)
    accuracy = GaugeMetricFamily("support_routing_accuracy", "", labels=["dimension"])
    accuracy.add_metric(["overall"], 0.875)
    data = {d["MetricName"]: d for d in metric_data([review, accuracy], at=datetime.now(UTC))}
    assert (data["ManualReviewRate"]["Value"], data["ManualReviewRate"]["Unit"]) == (
        40.0,
        "Percent",
    )
    assert (data["RoutingAccuracy"]["Value"], data["RoutingAccuracy"]["Unit"]) == (
        87.5,
        "Percent",
    )
    # The gauges under their own names stay fractions, as on /metrics.
    assert data["routing_manual_review_rate"]["Value"] == 0.4
    assert "Unit" not in data["routing_manual_review_rate"]
    assert "Unit" not in data["TicketsProcessed"]


def test_a_quiet_interval_sends_no_average_or_rate_only_counts() -> None:
    """No decision in the interval: the seed's counts say 0, but no ConfidenceScore,
    ProcessingTime, ManualReviewRate or RoutingAccuracy datapoint is sent (before: 0, which
    an alarm such as "confidence < 0.6" reads as a breach in every quiet minute)."""
    from datetime import UTC, datetime

    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    from support.cloudwatch import metric_data

    processed = GaugeMetricFamily("support_routing_tickets_processed", "", labels=["provider"])
    seconds = HistogramMetricFamily(
        "support_routing_processing_seconds", "", buckets=[("1.0", 0), ("+Inf", 0)], sum_value=0
    )
    data = {d["MetricName"]: d for d in metric_data([processed, seconds], at=datetime.now(UTC))}
    assert data["TicketsProcessed"]["Value"] == 0.0
    assert data["routing_processing_seconds_count"]["Value"] == 0.0
    for absent in (
        "ConfidenceScore",
        "ProcessingTime",
        "ManualReviewRate",
        "RoutingAccuracy",
        "CostPerTicket",
        "routing_processing_seconds_mean",
    ):
        assert absent not in data
