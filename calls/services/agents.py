"""Agent states and alerts (the alerts published to SNS through the delivery engine)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from calls.models import (
    AgentStateEvent,
    AgentStateSpan,
    Alert,
    AlertKind,
    AlertRule,
)
from calls.parsers import (
    agent_state,
)
from support.aws import aws_client, aws_error
from support.delivery.models import Delivery
from support.delivery.registry import Schedule, SendResult, TargetKind
from support.delivery.services import delivery_enqueue
from support.events import event_record
from support.text import words

logger = logging.getLogger(__name__)


# --- agent states and alerts ----------------------------------------------------------------


def agent_event_apply(*, record: dict[str, Any]) -> AgentStateEvent | None:
    """Record an agent event, move the agent's span on a state change, check the rules."""
    state = agent_state(record)
    event, created = AgentStateEvent.objects.get_or_create(
        event_id=state.event_id,
        defaults={
            "event_type": state.event_type,
            "agent_arn": state.agent_arn,
            "username": state.username,
            "state": state.state,
            "state_started_at": state.state_started_at,
            "occurred_at": state.occurred_at,
            "raw": record,
        },
    )
    if not created:
        return None
    if state.state and state.state_started_at:
        open_span = (
            AgentStateSpan.objects.select_for_update()
            .filter(agent_arn=state.agent_arn, ended_at__isnull=True)
            .first()
        )
        started = state.state_started_at
        if open_span is None or (
            open_span.state != state.state and started >= open_span.started_at
        ):
            closed = None
            if open_span is not None:
                open_span.ended_at = started
                open_span.save(update_fields=["ended_at", "updated_at"])
                closed = open_span
            AgentStateSpan.objects.get_or_create(
                agent_arn=state.agent_arn,
                state=state.state,
                started_at=started,
                defaults={"username": state.username, "ended_at": None},
            )
            event_record(
                "call.agent_state",
                aggregate_type="agent",
                aggregate_id=state.username or state.agent_arn[-64:],
                payload={
                    "username": state.username,
                    "agent_arn": state.agent_arn,
                    "state": state.state,
                    "since": started.isoformat(),
                    "previous_state": closed.state if closed else "",
                    "previous_seconds": closed.duration_seconds() if closed else None,
                },
            )
            if closed is not None:
                alerts_evaluate(spans=[closed])
    # Judged as of the event's own time: a replayed or late stream must not alert on
    # spans that only look long because the record is old (the beat sweep uses now).
    alerts_evaluate(agent_arn=state.agent_arn, now=state.occurred_at)
    return event


def _in_shift(rule: AlertRule, now: datetime) -> bool:
    if rule.shift_start is None or rule.shift_end is None:
        return True
    local = timezone.localtime(now).time()
    if rule.shift_start <= rule.shift_end:
        return rule.shift_start <= local < rule.shift_end
    return local >= rule.shift_start or local < rule.shift_end


def _shift_started_at(rule: AlertRule, moment: datetime) -> datetime | None:
    """When the shift that ``moment`` falls in began: the latest ``shift_start`` (local
    time) at or before it, the evening before for a shift past midnight. None for rules
    without a shift."""
    if rule.kind != AlertKind.OFFLINE_DURING_SHIFT or rule.shift_start is None:
        return None
    local = timezone.localtime(moment)
    started = local.replace(
        hour=rule.shift_start.hour,
        minute=rule.shift_start.minute,
        second=rule.shift_start.second,
        microsecond=0,
    )
    if started > local:
        started -= timedelta(days=1)
    return started


def alerts_evaluate(
    *,
    now: datetime | None = None,
    agent_arn: str | None = None,
    spans: list[AgentStateSpan] | None = None,
) -> list[Alert]:
    """Raise each rule's alert at most once per span (the beat sweep calls this too)."""
    now = now or timezone.now()
    raised: list[Alert] = []
    for rule in AlertRule.objects.filter(enabled=True):
        if rule.kind == AlertKind.STATE_LONGER_THAN:
            state = rule.state
        else:
            state = "Offline"
            if not _in_shift(rule, now):
                continue
        limit = timedelta(minutes=rule.threshold_minutes)
        if spans is not None:
            candidates = [s for s in spans if s.state == state]
        else:
            query = AgentStateSpan.objects.filter(
                state=state, ended_at__isnull=True, started_at__lt=now - limit
            )
            if agent_arn:
                query = query.filter(agent_arn=agent_arn)
            candidates = list(query)
        for span in candidates:
            end = span.ended_at or now
            start = span.started_at
            shift_started = _shift_started_at(rule, end)
            if shift_started is not None:
                # Offline *during the shift*: time offline before it began does not count.
                start = max(start, shift_started)
            # Seed 002: an alert when the threshold is *exceeded* (the rule reads "longer
            # than N minutes"): exactly N minutes is not, N minutes and a moment is.
            # Compared exactly, not in the whole seconds duration_seconds() rounds to.
            if end - start <= limit:
                continue
            seconds = max(0, int((end - start).total_seconds()))
            alert = alert_raise(rule=rule, span=span, seconds=seconds)
            if alert is not None:
                raised.append(alert)
    return raised


def alert_raise(*, rule: AlertRule, span: AgentStateSpan, seconds: int) -> Alert | None:
    who = span.username or span.agent_arn
    minutes = seconds // 60
    if rule.kind == AlertKind.STATE_LONGER_THAN:
        # The state in words, as the board shows it ("AfterContactWork" → "after contact
        # work"); the stored state and the event payload keep Amazon Connect's name.
        state = words(span.state)
        state = state[:1].lower() + state[1:]
        message = f"{who} has been in {state} for {minutes} min (limit {rule.threshold_minutes})."
    else:
        message = f"{who} has been offline during their shift for {minutes} min."
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, span=span, username=span.username, message=message
            )
    except IntegrityError:
        return None
    event_record(
        "call.alert",
        aggregate_type="agent",
        aggregate_id=span.username or span.agent_arn[-64:],
        payload={
            "alert_id": alert.pk,
            "rule": rule.name,
            "username": span.username,
            "agent_arn": span.agent_arn,
            "state": span.state,
            "minutes": minutes,
            "message": message,
            # The span's start: the board marks the alert over once that span has ended.
            "since": span.started_at.isoformat(),
        },
    )
    if rule.notify_sns and settings.CALLS_ALERT_SNS_TOPIC_ARN:
        alert_sns_delivery_create(alert=alert)
    return alert


# An alert published to ``CALLS_ALERT_SNS_TOPIC_ARN`` is a ``support.delivery`` delivery of
# kind ``sns_alert`` (idempotency key ``alert:<id>``): attempts recorded, AWS failures
# classified by ``support.aws`` (throttled and 5xx retried with backoff, refused
# credentials pause the target), dead letters re-driven from the deliveries admin.

SNS_ALERT_KIND = "sns_alert"


def alert_sns_delivery_create(*, alert: Alert) -> Delivery:
    """The alert's SNS delivery (one per alert; sent after commit)."""
    return delivery_enqueue(
        kind=SNS_ALERT_KIND,
        idempotency_key=f"alert:{alert.pk}",
        target_key=str(settings.CALLS_ALERT_SNS_TOPIC_ARN)[:255],
        subject_type="alert",
        subject_id=alert.pk,
        payload={"alert_id": alert.pk, "topic_arn": settings.CALLS_ALERT_SNS_TOPIC_ARN},
    )


def alert_sns_publish(*, alert_id: int, topic_arn: str = "", client: Any = None) -> str:
    """Publish one alert to ``topic_arn`` (default ``CALLS_ALERT_SNS_TOPIC_ARN``);
    failures raise the project's ``RetryableError`` / ``PermanentError`` (``support.aws``)."""
    alert = Alert.objects.select_related("rule").get(pk=alert_id)
    sns = client or aws_client("sns")
    try:
        response = sns.publish(
            TopicArn=topic_arn or settings.CALLS_ALERT_SNS_TOPIC_ARN,
            Subject=f"Agent alert: {alert.rule.name}"[:100],
            Message=json.dumps(
                {"alert_id": alert.pk, "username": alert.username, "message": alert.message}
            ),
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context=f"SNS alert {alert.pk}") from exc
    return str(response["MessageId"])


def alert_sns_send(delivery: Delivery) -> SendResult:
    """The delivery engine's send for ``sns_alert`` (no transaction open)."""
    payload = delivery.payload
    message_id = alert_sns_publish(
        alert_id=int(payload["alert_id"]), topic_arn=str(payload.get("topic_arn") or "")
    )
    return SendResult(
        external_id=message_id,
        request_summary={"alert_id": payload["alert_id"], "topic_arn": payload.get("topic_arn")},
    )


def alert_sns_target_kind() -> TargetKind:
    """Registered in ``CallsConfig.ready()``."""
    return TargetKind(
        name=SNS_ALERT_KIND,
        label="Agent alert to SNS",
        send=alert_sns_send,
        schedule=lambda: Schedule(max_attempts=6, base=2.0, cap=300.0),
    )


def alert_acknowledge(*, alert: Alert, actor: Any = None) -> Alert:
    """A supervisor has seen the alert: it leaves the board (every open board, through a
    ``call.alert_acknowledged`` event) and keeps who and when. Acknowledging one already
    acknowledged changes nothing (two supervisors pressing at once: the first one counts)."""
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(),
            acknowledged_by=actor if getattr(actor, "pk", None) else None,
            updated_at=timezone.now(),
        )
        if updated:
            event_record(
                "call.alert_acknowledged",
                aggregate_type="agent",
                aggregate_id=alert.username or alert.span.agent_arn[-64:],
                payload={
                    "alert_id": alert.pk,
                    "username": alert.username,
                    "by": getattr(actor, "username", "") or "",
                },
            )
    alert.refresh_from_db(fields=["acknowledged_at", "acknowledged_by", "updated_at"])
    return alert
