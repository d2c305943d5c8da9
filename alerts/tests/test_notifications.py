"""Notifications are deliveries: one per (state change, target), sent by the adapters of
e-mail, Slack, PagerDuty (Events API v2) and SNS, every attempt recorded, failures mapped
to retryable / permanent."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import responses
from django.core import mail
from moto import mock_aws

from alerts.models import AlertTarget, Severity, TargetKind
from alerts.services import alert_acknowledge, alert_raise, alert_resolve
from support.delivery.models import Attempt, Delivery, Outcome
from support.delivery.services import delivery_attempt
from support.models import DeliveryStatus

PD_URL = "https://events.pagerduty.com/v2/enqueue"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def _target(kind: str, severities: list[str], **extra: object) -> AlertTarget:
    return AlertTarget.objects.create(name=kind, kind=kind, severities=severities, **extra)


def _raise(severity: str = Severity.CRITICAL, fingerprint: str = "rule:test") -> int:
    return alert_raise(
        fingerprint=fingerprint,
        title="HighErrorRate",
        summary="Errors over 5%.",
        severity=severity,
    ).alert.pk


def _send_all() -> list[Delivery]:
    for delivery in Delivery.objects.filter(status=DeliveryStatus.PENDING).order_by("pk"):
        delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    return list(Delivery.objects.order_by("pk"))


@pytest.mark.django_db
def test_tiers_choose_the_targets(supervisor):
    pager = _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    email = _target(TargetKind.EMAIL, ["critical", "warning"])
    _target(TargetKind.SLACK, ["info"], secret=SLACK_URL)
    _target(TargetKind.EMAIL, ["critical"], is_active=False)

    _raise(Severity.CRITICAL, "a")
    _raise(Severity.WARNING, "b")

    rows = Delivery.objects.order_by("pk").values_list("target_kind", "target_key", "subject_type")
    assert list(rows) == [
        ("alert_pagerduty", pager.target_key, "alert"),
        ("alert_email", email.target_key, "alert"),
        ("alert_email", email.target_key, "alert"),
    ]


@pytest.mark.django_db
def test_email_goes_to_supervisors_or_the_configured_addresses(supervisor, agent):
    _target(TargetKind.EMAIL, ["critical"])
    _target(TargetKind.EMAIL, ["critical"], email_to="oncall@example.com, ops@example.com")
    alert_id = _raise()

    deliveries = _send_all()

    assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED] * 2
    assert [m.to for m in mail.outbox] == [
        ["supervisor@example.com"],
        ["oncall@example.com", "ops@example.com"],
    ]
    assert mail.outbox[0].subject == "[Support alert] [FIRING] [critical] HighErrorRate"
    assert f"/alerts/{alert_id}/" in mail.outbox[0].body
    assert Attempt.objects.filter(outcome=Outcome.SUCCESS).count() == 2


@pytest.mark.django_db
@responses.activate
def test_pagerduty_trigger_acknowledge_resolve_share_the_dedup_key(supervisor, public_dns):
    _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    responses.post(PD_URL, status=202, json={"status": "success", "dedup_key": "x"})
    alert_id = _raise()
    _send_all()
    alert_acknowledge(alert_id=alert_id, actor=supervisor)
    _send_all()
    alert_resolve(alert_id=alert_id, actor=supervisor)
    _send_all()

    bodies = [json.loads(call.request.body or b"") for call in responses.calls]
    key = f"support-alert-{alert_id}"
    assert bodies[0] == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": "[critical] HighErrorRate",
            "source": "support-desk",
            "severity": "critical",
            "custom_details": {"summary": "Errors over 5%."},
            "class": "rule",
        },
        "client": "support-desk",
        "client_url": f"http://127.0.0.1:8000/alerts/{alert_id}/",
        "links": [{"href": f"http://127.0.0.1:8000/alerts/{alert_id}/", "text": "Open the alert"}],
    }
    assert bodies[1:] == [
        {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": key},
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key},
    ]
    assert list(Delivery.objects.values_list("status", flat=True)) == [DeliveryStatus.SUCCEEDED] * 3


@pytest.mark.django_db
@responses.activate
def test_pagerduty_400_is_permanent_and_5xx_retried(public_dns):
    _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    responses.post(PD_URL, status=400, json={"status": "invalid event"})
    _raise(fingerprint="a")
    [refused] = _send_all()
    responses.replace(responses.POST, PD_URL, status=503, body="busy")
    _raise(fingerprint="b")
    deliveries = _send_all()

    refused.refresh_from_db()
    assert refused.status == DeliveryStatus.DEAD
    assert refused.attempt_log.get().outcome == Outcome.PERMANENT
    assert deliveries[1].status == DeliveryStatus.RETRYING
    assert deliveries[1].attempt_log.get().outcome == Outcome.RETRYABLE


@pytest.mark.django_db
@responses.activate
def test_a_429_with_only_a_rate_limit_reset_is_retried_no_earlier_than_the_reset(
    public_dns, settings
):
    """A target's 429 with ``X-RateLimit-Reset`` (Unix seconds) and no ``Retry-After``:
    the next attempt waits for the reset, not the schedule's few seconds' backoff (which
    called it again within the same closed window)."""
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    reset = int(time.time()) + 300
    responses.post(
        PD_URL,
        status=429,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        body="rate limited",
    )
    _raise()
    delivery = Delivery.objects.get()

    report = delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)

    assert report.outcome == Outcome.THROTTLED
    assert report.next_attempt_in is not None
    assert reset - time.time() <= report.next_attempt_in <= reset - time.time() + 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.RETRYING, 1)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at.timestamp() >= reset - 1
    assert len(responses.calls) == 1


@pytest.mark.django_db
@responses.activate
def test_slack_posts_text_to_the_webhook(public_dns):
    _target(TargetKind.SLACK, ["warning"], secret=SLACK_URL)
    responses.post(SLACK_URL, status=200, body="ok")
    alert_id = _raise(Severity.WARNING)

    [delivery] = _send_all()

    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert json.loads(responses.calls[0].request.body or b"") == {
        "text": "*[FIRING] [warning] HighErrorRate*\nErrors over 5%.\n"
        f"<http://127.0.0.1:8000/alerts/{alert_id}/|Open the alert>"
    }
    # The webhook URL is the credential: never in the attempt log.
    assert SLACK_URL not in json.dumps(delivery.attempt_log.get().request_summary)


@pytest.mark.django_db
@responses.activate
@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ({"body": "x" * (1024 * 1024)}, "over 65536 bytes"),  # cut off past 64 KiB
        (  # refused on its Content-Length, before the body is read
            {"body": "ok", "headers": {"Content-Length": str(20 * 1024 * 1024)}},
            f"is {20 * 1024 * 1024} bytes",
        ),
    ],
)
def test_an_over_large_answer_from_a_target_is_a_permanent_failure_not_read(
    public_dns, answer, refusal
):
    """A target's URL is data (a supervisor typed it): whatever answers there is not read
    whole into the worker's memory. Past 64 KiB the answer is refused, a permanent failure
    with its status (a retry would get the same), never a success."""
    _target(TargetKind.SLACK, ["warning"], secret=SLACK_URL)
    responses.post(SLACK_URL, status=200, **answer)
    _raise(Severity.WARNING)

    [delivery] = _send_all()

    assert (delivery.status, delivery.error_code, delivery.last_http_status) == (
        DeliveryStatus.DEAD,
        "answer_too_large",
        200,
    )
    assert delivery.attempt_log.get().outcome == Outcome.PERMANENT
    assert refusal in delivery.last_error


@pytest.mark.django_db
@responses.activate
def test_a_private_slack_url_is_refused_before_any_request(monkeypatch):
    from alerts.adapters import http as alerts_http

    monkeypatch.setattr(alerts_http, "resolver", lambda host, port: ["10.0.0.5"])
    _target(TargetKind.SLACK, ["warning"], secret=SLACK_URL)
    _raise(Severity.WARNING)

    [delivery] = _send_all()

    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.error_code == "unsafe_url"
    assert len(responses.calls) == 0


@pytest.mark.django_db
@mock_aws
def test_sns_publishes_to_the_topic(settings):
    settings.AWS_REGION = "eu-west-1"
    sns = boto3.client("sns", region_name="eu-west-1")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    topic = sns.create_topic(Name="support-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    _target(TargetKind.SNS, ["critical"], topic_arn=topic)
    alert_id = _raise()

    [delivery] = _send_all()

    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.external_id
    [received] = sqs.receive_message(QueueUrl=queue)["Messages"]
    envelope = json.loads(received["Body"])
    assert envelope["Subject"] == "[FIRING] [critical] HighErrorRate"
    message = json.loads(envelope["Message"])
    assert (message["alert_id"], message["action"], message["severity"]) == (
        alert_id,
        "trigger",
        "critical",
    )


@pytest.mark.django_db
@mock_aws
def test_sns_missing_topic_is_permanent(settings):
    settings.AWS_REGION = "eu-west-1"
    _target(TargetKind.SNS, ["critical"], topic_arn="arn:aws:sns:eu-west-1:123456789012:gone")
    _raise()

    [delivery] = _send_all()

    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.attempt_log.get().outcome == Outcome.PERMANENT


@pytest.mark.django_db
def test_a_deactivated_target_gets_no_trigger_nor_acknowledge_but_the_resolve(supervisor):
    """Its trigger was queued (it may have gone out before the target was switched off:
    a retry after a timeout), so the resolve still goes: it closes what the trigger may
    have opened. Nothing else does."""
    target = _target(TargetKind.EMAIL, ["critical"])
    alert_id = _raise()
    target.is_active = False
    target.save()

    [delivery] = _send_all()
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.error_code == "target_inactive"
    assert mail.outbox == []
    alert_acknowledge(alert_id=alert_id, actor=supervisor)
    assert Delivery.objects.count() == 1  # an acknowledge goes to active targets only
    _raise(fingerprint="another")
    assert Delivery.objects.count() == 1  # and so does a new trigger

    alert_resolve(alert_id=alert_id, actor=supervisor)
    [_, resolve] = _send_all()

    assert (resolve.target_key, resolve.status) == (target.target_key, DeliveryStatus.SUCCEEDED)
    assert [m.subject for m in mail.outbox] == [
        "[Support alert] [RESOLVED by supervisor] [critical] HighErrorRate"
    ]
    attempt = resolve.attempt_log.get()
    assert (attempt.outcome, attempt.request_summary) == (
        Outcome.SUCCESS,
        {"to": ["supervisor@example.com"], "action": "resolve", "target_inactive": True},
    )


@pytest.mark.django_db
@responses.activate
def test_a_pagerduty_target_deactivated_while_the_alert_fires_gets_the_resolve(
    supervisor, public_dns
):
    """The incident the trigger opened at PagerDuty is resolved there too, not left open
    for ever because a supervisor switched the target off first."""
    target = _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    responses.post(PD_URL, status=202, json={"status": "success"})
    alert_id = _raise()
    _send_all()
    target.is_active = False
    target.save()

    alert_resolve(alert_id=alert_id)
    deliveries = _send_all()

    key = f"support-alert-{alert_id}"
    assert [json.loads(call.request.body or b"") for call in responses.calls][1:] == [
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    ]
    assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED] * 2
    attempt = deliveries[1].attempt_log.get()
    assert (attempt.http_status, attempt.request_summary["target_inactive"]) == (202, True)


@pytest.mark.django_db
@responses.activate
def test_a_resolve_queued_before_the_target_was_deactivated_is_still_sent(supervisor, public_dns):
    """PagerDuty down when the resolve was first tried; the target switched off before the
    retry: the retry still goes."""
    target = _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    responses.post(PD_URL, status=202, json={"status": "success"})
    alert_id = _raise()
    _send_all()
    responses.replace(responses.POST, PD_URL, status=503, body="busy")
    alert_resolve(alert_id=alert_id, actor=supervisor)
    [_, resolve] = _send_all()
    assert resolve.status == DeliveryStatus.RETRYING
    target.is_active = False
    target.save()
    responses.replace(responses.POST, PD_URL, status=202, json={"status": "success"})

    delivery_attempt(delivery_id=resolve.pk, expected_attempts=1)

    resolve.refresh_from_db()
    assert resolve.status == DeliveryStatus.SUCCEEDED
    actions = [json.loads(call.request.body or b"")["event_action"] for call in responses.calls]
    assert actions == ["trigger", "resolve", "resolve"]


@pytest.mark.django_db
@responses.activate
def test_a_deleted_target_gets_no_resolve(supervisor, public_dns):
    """Its routing key is gone with it: nothing is queued, and a resolve queued before
    the deletion is a dead letter that says why."""
    kept = _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    deleted = _target(TargetKind.EMAIL, ["critical"])
    responses.post(PD_URL, status=202, json={"status": "success"})
    first = _raise(fingerprint="a")
    second = _raise(fingerprint="b")
    _send_all()
    alert_resolve(alert_id=first, actor=supervisor)
    deleted_key = deleted.target_key
    deleted.delete()
    alert_resolve(alert_id=second, actor=supervisor)

    deliveries = _send_all()

    resolves = [d for d in deliveries if d.payload["message"]["action"] == "resolve"]
    assert [(d.target_key, d.status, d.error_code) for d in resolves] == [
        (kept.target_key, DeliveryStatus.SUCCEEDED, ""),
        (deleted_key, DeliveryStatus.DEAD, "target_deleted"),
        (kept.target_key, DeliveryStatus.SUCCEEDED, ""),
    ]


@pytest.mark.django_db
@responses.activate
def test_a_trigger_still_retrying_when_the_alert_resolves_is_not_sent_after_the_resolve(
    supervisor, public_dns
):
    """PagerDuty down for the trigger, back for the resolve: a trigger retried (or
    re-driven) after the resolve would open an incident nothing ever resolves."""
    _target(TargetKind.PAGERDUTY, ["critical"], secret=ROUTING_KEY)
    responses.post(PD_URL, status=503, body="busy")
    alert_id = _raise()
    [trigger] = _send_all()
    assert trigger.status == DeliveryStatus.RETRYING
    responses.replace(responses.POST, PD_URL, status=202, json={"status": "success"})
    alert_resolve(alert_id=alert_id, actor=supervisor)
    _send_all()

    report = delivery_attempt(delivery_id=trigger.pk, expected_attempts=1)

    actions = [json.loads(call.request.body or b"")["event_action"] for call in responses.calls]
    assert actions == ["trigger", "resolve"]
    trigger.refresh_from_db()
    assert (report.claimed, trigger.status) == (True, DeliveryStatus.SUCCEEDED)
    attempt = trigger.attempt_log.order_by("number").last()
    assert attempt is not None
    assert (attempt.http_status, attempt.request_summary) == (
        None,
        {"target": trigger.payload["target_id"], "event_action": "trigger", "sent": False},
    )
    assert "resolved before" in attempt.response_summary
