"""PagerDuty Events API v2: ``POST {ALERTS_PAGERDUTY_EVENTS_URL}`` (default
``https://events.pagerduty.com/v2/enqueue``) with ``routing_key`` (the integration key, held
encrypted in ``AlertTarget.secret``), ``event_action`` (``trigger`` / ``acknowledge`` /
``resolve``) and ``dedup_key`` (one per alert, so acknowledge and resolve reach the incident
the trigger opened); a trigger carries ``payload.summary`` (≤ 1024 characters),
``payload.source`` and ``payload.severity`` (critical, error, warning or info). PagerDuty
answers 202; 400 is a permanent refusal, 429 throttled, 5xx retryable."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from alerts.adapters import AlertMessage
from alerts.adapters.http import post_json
from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult

SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_event(*, routing_key: str, message: AlertMessage) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": message.action,
        "dedup_key": message.dedup_key,
    }
    if message.action == "trigger":
        event["payload"] = {
            "summary": f"[{message.severity}] {message.title}"[:1024],
            "source": str(settings.ALERTS_SOURCE_NAME),
            "severity": SEVERITIES.get(message.severity, "error"),
            "custom_details": {"summary": message.summary, **message.details},
        }
        if message.source:
            event["payload"]["class"] = message.source
        event["client"] = str(settings.ALERTS_SOURCE_NAME)
        if message.url:
            event["client_url"] = message.url
            event["links"] = [{"href": message.url, "text": "Open the alert"}]
    return event


def pagerduty_send(target: Any, message: AlertMessage) -> SendResult:
    routing_key = str(target.secret or "")
    if not routing_key:
        raise DeliveryError(
            "The PagerDuty target has no routing key.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    return post_json(
        url=str(settings.ALERTS_PAGERDUTY_EVENTS_URL),
        body=pagerduty_event(routing_key=routing_key, message=message),
        summary={
            "target": target.pk,
            "event_action": message.action,
            "dedup_key": message.dedup_key,
        },
    )
