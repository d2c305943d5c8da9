"""Agent event stream: spans with durations, alert rules, live alert events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time, timedelta

import pytest
from moto import mock_aws

from calls import services
from calls.models import AgentStateEvent, AgentStateSpan, Alert, AlertKind, AlertRule
from calls.tests.conftest import load
from support.models import OutboxEvent

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 20, 10, 8, 40, tzinfo=UTC)


def event(
    event_id: str, contact_state: str | None, when: datetime, at: datetime | None = None
) -> dict:
    record = copy.deepcopy(load("agent_state_acw.json"))
    record["EventId"] = event_id
    record["EventTimestamp"] = (at or when).isoformat().replace("+00:00", "Z")
    snapshot = record["CurrentAgentSnapshot"]
    snapshot["AgentStatus"]["StartTimestamp"] = when.isoformat()
    if contact_state is None:
        snapshot["Contacts"] = []
    else:
        snapshot["Contacts"][0]["State"] = contact_state
        snapshot["Contacts"][0]["StateStartTimestamp"] = when.isoformat()
    return record


@pytest.fixture
def acw_rule(db):
    return AlertRule.objects.create(
        name="Long ACW",
        kind=AlertKind.STATE_LONGER_THAN,
        state="AfterContactWork",
        threshold_minutes=5,
    )


def test_spans_and_durations(acw_rule):
    services.agent_event_apply(record=event("e1", "CONNECTED", T0 - timedelta(minutes=4)))
    services.agent_event_apply(record=event("e2", "ENDED", T0))
    services.agent_event_apply(record=event("e3", None, T0 + timedelta(minutes=2)))
    spans = list(AgentStateSpan.objects.order_by("started_at"))
    assert [(s.state, s.duration_seconds()) for s in spans[:2]] == [
        ("OnContact", 240),
        ("AfterContactWork", 120),
    ]
    assert (spans[2].state, spans[2].ended_at) == ("Available", None)
    assert spans[0].username == "jdoe"
    assert not Alert.objects.exists()  # ACW lasted 2 minutes, under the 5-minute limit


def test_long_acw_raises_one_alert_and_a_live_event(acw_rule):
    now = datetime.now(UTC)
    started = now - timedelta(minutes=12)
    # Entering ACW 12 minutes ago, reported now (as a late record or a heartbeat shows it).
    services.agent_event_apply(record=event("e1", "ENDED", started, at=now))
    alert = Alert.objects.get()
    assert alert.message == "jdoe has been in after contact work for 12 min (limit 5)."
    outbox = OutboxEvent.objects.filter(event_type="call.alert").get()
    assert outbox.payload == {
        "alert_id": alert.pk,
        "rule": "Long ACW",
        "username": "jdoe",
        "agent_arn": alert.span.agent_arn,
        "state": "AfterContactWork",
        "minutes": 12,
        "message": alert.message,
        "since": started.isoformat(),  # the span's start: the board marks it over after
    }
    # The same record again, a heartbeat and the sweep: still one alert.
    assert services.agent_event_apply(record=event("e1", "ENDED", started, at=now)) is None
    heartbeat = event("e2", "ENDED", started, at=now)
    heartbeat["EventType"] = "HEART_BEAT"
    services.agent_event_apply(record=heartbeat)
    assert services.alerts_evaluate() == []
    assert Alert.objects.count() == 1
    assert AgentStateEvent.objects.count() == 2


def test_sweep_raises_when_the_threshold_passes(acw_rule):
    started = datetime.now(UTC) - timedelta(minutes=3)
    services.agent_event_apply(record=event("e1", "ENDED", started))
    assert not Alert.objects.exists()
    raised = services.alerts_evaluate(now=datetime.now(UTC) + timedelta(minutes=3))
    assert [a.username for a in raised] == ["jdoe"]


def test_offline_during_shift(db):
    _offline_in_shift(10, time(9, 0), time(17, 0), since=datetime(2026, 11, 20, 11, 0, tzinfo=UTC))
    assert services.alerts_evaluate(now=datetime(2026, 11, 20, 11, 5, tzinfo=UTC)) == []
    assert (
        services.alerts_evaluate(now=datetime(2026, 11, 20, 18, 0, tzinfo=UTC)) == []
    )  # after shift
    raised = services.alerts_evaluate(now=datetime(2026, 11, 20, 11, 20, tzinfo=UTC))
    assert [a.message for a in raised] == ["jdoe has been offline during their shift for 20 min."]


@mock_aws
def test_alert_to_sns(settings, acw_rule, django_capture_on_commit_callbacks):
    import boto3

    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="agent-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    settings.CALLS_ALERT_SNS_TOPIC_ARN = topic
    settings.AWS_REGION = "us-east-1"
    acw_rule.notify_sns = True
    acw_rule.save()
    with django_capture_on_commit_callbacks(execute=True):
        now = datetime.now(UTC)
        services.agent_event_apply(record=event("e1", "ENDED", now - timedelta(minutes=9), at=now))
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    assert "jdoe has been in after contact work for 9 min" in messages[0]["Body"]


def test_a_state_exactly_as_long_as_the_limit_has_not_exceeded_it(acw_rule):
    """Seed 002: "alert sent if threshold exceeded"; the rule is "state lasts *longer
    than* N minutes". Before: 5:00 of after-contact work raised the 5-minute alert, on
    a closed span at intake and on an open one in the sweep."""
    # A closed span of exactly 5:00, then one of 5:01.
    services.agent_event_apply(record=event("e1", "ENDED", T0))
    services.agent_event_apply(record=event("e2", None, T0 + timedelta(minutes=5)))
    assert not Alert.objects.exists()
    services.agent_event_apply(record=event("e3", "ENDED", T0 + timedelta(minutes=10)))
    services.agent_event_apply(record=event("e4", None, T0 + timedelta(minutes=15, seconds=1)))
    assert [a.message for a in Alert.objects.all()] == [
        "jdoe has been in after contact work for 5 min (limit 5)."
    ]
    # The sweep over an open span: not at 5:00, at 5:00.5.
    services.agent_event_apply(record=event("e5", "ENDED", T0 + timedelta(minutes=20)))
    assert services.alerts_evaluate(now=T0 + timedelta(minutes=25)) == []
    late = T0 + timedelta(minutes=25, milliseconds=500)
    assert [a.span.state for a in services.alerts_evaluate(now=late)] == ["AfterContactWork"]


def test_offline_exactly_as_long_as_the_limit_raises_nothing(db):
    _offline_in_shift(10, time(9, 0), time(17, 0), since=datetime(2026, 11, 20, 11, 0, tzinfo=UTC))
    assert services.alerts_evaluate(now=datetime(2026, 11, 20, 11, 10, tzinfo=UTC)) == []
    raised = services.alerts_evaluate(now=datetime(2026, 11, 20, 11, 10, 1, tzinfo=UTC))
    assert [a.message for a in raised] == ["jdoe has been offline during their shift for 10 min."]


def test_each_state_change_is_one_live_event_for_the_board(acw_rule):
    """Seed 002's agent monitoring: "state duration calculated … state saved …
    WebSocket API pushes update to frontend": every change of state is one
    ``call.agent_state`` event on the ``events`` group (the board's socket), with the
    state left and how long it lasted; a heartbeat in the same state adds none."""
    arn = load("agent_state_acw.json")["AgentARN"]
    services.agent_event_apply(record=event("e1", "CONNECTED", T0 - timedelta(minutes=4)))
    services.agent_event_apply(record=event("e2", "ENDED", T0))
    heartbeat = event("e3", "ENDED", T0, at=T0 + timedelta(minutes=1))
    heartbeat["EventType"] = "HEART_BEAT"
    services.agent_event_apply(record=heartbeat)
    services.agent_event_apply(record=event("e4", None, T0 + timedelta(minutes=2)))
    events = list(OutboxEvent.objects.filter(event_type="call.agent_state").order_by("id"))
    assert [e.payload for e in events] == [
        {
            "username": "jdoe",
            "agent_arn": arn,
            "state": state,
            "since": since.isoformat(),
            "previous_state": previous,
            "previous_seconds": seconds,
        }
        for state, since, previous, seconds in [
            ("OnContact", T0 - timedelta(minutes=4), "", None),
            ("AfterContactWork", T0, "OnContact", 240),
            ("Available", T0 + timedelta(minutes=2), "AfterContactWork", 120),
        ]
    ]


def _offline_in_shift(threshold: int, start: time, end: time, *, since: datetime) -> None:
    """An "offline during shift" rule, and jdoe logged out at ``since``."""
    AlertRule.objects.create(
        name="Offline in shift",
        kind=AlertKind.OFFLINE_DURING_SHIFT,
        threshold_minutes=threshold,
        shift_start=start,
        shift_end=end,
    )
    logout = event("e1", None, since)
    logout["EventType"] = "LOGOUT"
    services.agent_event_apply(record=logout)


def test_offline_during_shift_counts_only_the_time_inside_the_shift(db):
    """Offline since 08:00 with the shift starting at 09:00: at 09:05 the agent has been
    offline *during their shift* for 5 minutes, not 65. Before: the whole span counted,
    so the 10-minute rule fired the minute the shift began ("offline during their shift
    for 61 min"); an overnight shift counts from its start the evening before."""
    _offline_in_shift(10, time(9, 0), time(17, 0), since=datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    assert services.alerts_evaluate(now=datetime(2026, 11, 20, 9, 5, tzinfo=UTC)) == []
    assert services.alerts_evaluate(now=datetime(2026, 11, 20, 9, 10, tzinfo=UTC)) == []
    raised = services.alerts_evaluate(now=datetime(2026, 11, 20, 9, 12, tzinfo=UTC))
    assert [a.message for a in raised] == ["jdoe has been offline during their shift for 12 min."]


def test_offline_across_midnight_counts_from_the_evening_shift_start(db):
    _offline_in_shift(30, time(22, 0), time(6, 0), since=datetime(2026, 11, 20, 18, 0, tzinfo=UTC))
    assert services.alerts_evaluate(now=datetime(2026, 11, 20, 22, 20, tzinfo=UTC)) == []
    raised = services.alerts_evaluate(now=datetime(2026, 11, 21, 0, 15, tzinfo=UTC))
    assert [a.message for a in raised] == ["jdoe has been offline during their shift for 135 min."]


def test_a_login_soon_after_the_shift_began_raises_nothing(db):
    """The closed span judged at intake: offline 08:00-09:05, shift from 09:00, limit 10."""
    _offline_in_shift(10, time(9, 0), time(17, 0), since=datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    services.agent_event_apply(record=event("e2", None, datetime(2026, 11, 20, 9, 5, tzinfo=UTC)))
    assert [s.state for s in AgentStateSpan.objects.order_by("started_at")] == [
        "Offline",
        "Available",
    ]
    assert not Alert.objects.exists()
