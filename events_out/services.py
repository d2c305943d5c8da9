"""Events out: the outbox relay's external sinks and the delivery kinds that send them.

Each sink runs inside the relay's transaction and only *enqueues*: one ``support.delivery``
delivery per event and target, unique by its idempotency key (a batch the relay repeats adds
nothing). The delivery engine sends each with no transaction open and owns retries, circuit
breaking, dead letters and re-drive; each kind here only says how to send one payload:

- ``eventbridge_event``: ``PutEvents`` on ``EVENTS_EVENTBRIDGE_BUS`` (key ``event:<id>``);
  ``ticket.created`` is seed 004's ``TicketReceived``, the others map to the detail-types
  of ``events_out.catalog``; the detail is the event envelope.
- ``webhook_event``: a signed POST to each active outgoing webhook subscribed to the event
  type (key ``webhook:<webhook id>:event:<event id>``; ``Idempotency-Key: <event id>`` on
  the wire, so a receiver drops a repeat).
- ``kafka_event``: ``ticket.*`` to ``EVENTS_KAFKA_TOPIC_TICKETS`` and ``message.*`` to
  ``EVENTS_KAFKA_TOPIC_MESSAGES`` (seed 001), key ``event:<id>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction

from events_out import selectors
from events_out.adapters.eventbridge import MAX_ENTRY_BYTES, eventbridge_entry, eventbridge_put
from events_out.adapters.kafka import kafka_produce
from events_out.adapters.webhook import webhook_post
from events_out.catalog import (
    DETAIL_TYPES,
    KAFKA_MESSAGE_PREFIX,
    KAFKA_TICKET_PREFIX,
    is_exported,
)
from events_out.models import OutgoingWebhook
from events_out.signing import SIGNATURE_HEADER, signature_header
from support.delivery.models import Attempt, Delivery, Outcome
from support.delivery.registry import DeliveryError, Schedule, SendResult, TargetKind
from support.delivery.services import delivery_enqueue
from support.models import OutboxEvent
from support.sinks import EventSink

logger = logging.getLogger(__name__)

EVENTBRIDGE_KIND = "eventbridge_event"
WEBHOOK_KIND = "webhook_event"
KAFKA_KIND = "kafka_event"
KINDS = (EVENTBRIDGE_KIND, WEBHOOK_KIND, KAFKA_KIND)


def _subject(event: OutboxEvent) -> tuple[str, str]:
    ticket_id = event.payload.get("ticket_id")
    if ticket_id is not None:
        return "ticket", str(ticket_id)
    return event.aggregate_type, event.aggregate_id


def _enqueue_each(
    events: Sequence[OutboxEvent], plan: Callable[[OutboxEvent], list[dict[str, Any]]]
) -> dict[int, Exception]:
    """``plan(event)`` lists the deliveries of one event as ``delivery_enqueue`` keyword
    arguments; each event's are written in a savepoint, and a database failure fails that
    event only (it stays pending and comes again)."""
    errors: dict[int, Exception] = {}
    for event in events:
        if not is_exported(event.event_type):
            continue
        planned = plan(event)
        if not planned:
            continue
        subject_type, subject_id = _subject(event)
        try:
            with transaction.atomic():
                for kwargs in planned:
                    delivery_enqueue(subject_type=subject_type, subject_id=subject_id, **kwargs)
        except DatabaseError as exc:
            logger.exception("Could not enqueue the deliveries of outbox event %s", event.pk)
            errors[event.pk] = exc
    return errors


# --- sinks -----------------------------------------------------------------------------


class EventBridgeSink:
    name = "eventbridge"

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        bus = settings.EVENTS_EVENTBRIDGE_BUS
        if not bus:
            return {}
        return _enqueue_each(
            events,
            lambda event: [
                {
                    "kind": EVENTBRIDGE_KIND,
                    "idempotency_key": f"event:{event.pk}",
                    "target_key": bus,
                    "payload": {"event": event.envelope()},
                }
            ],
        )


class WebhookSink:
    name = "webhooks"

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        if not settings.OUTGOING_WEBHOOKS_ENABLED or not any(
            is_exported(e.event_type) for e in events
        ):
            return {}
        webhooks = [
            (w.pk, w.target_key, set(w.event_types)) for w in selectors.webhook_list_active()
        ]
        if not webhooks:
            return {}
        return _enqueue_each(
            events,
            lambda event: [
                {
                    "kind": WEBHOOK_KIND,
                    "idempotency_key": f"webhook:{pk}:event:{event.pk}",
                    "target_key": target_key,
                    "payload": {"webhook_id": pk, "event": event.envelope()},
                }
                for pk, target_key, types in webhooks
                if event.event_type in types
            ],
        )


def kafka_topic(event_type: str) -> str:
    if event_type.startswith(KAFKA_TICKET_PREFIX):
        return str(settings.EVENTS_KAFKA_TOPIC_TICKETS)
    if event_type.startswith(KAFKA_MESSAGE_PREFIX):
        return str(settings.EVENTS_KAFKA_TOPIC_MESSAGES)
    return ""


class KafkaSink:
    name = "kafka"

    def publish(self, events: Sequence[OutboxEvent]) -> Mapping[int, Exception]:
        if not settings.EVENTS_KAFKA_BOOTSTRAP_SERVERS:
            return {}
        return _enqueue_each(
            events,
            lambda event: [
                {
                    "kind": KAFKA_KIND,
                    "idempotency_key": f"event:{event.pk}",
                    "target_key": topic,
                    "payload": {"topic": topic, "event": event.envelope()},
                }
                for topic in [kafka_topic(event.event_type)]
                if topic
            ],
        )


def sinks() -> list[EventSink]:
    """Registered with the relay in ``EventsOutConfig.ready()`` (after the websocket sink)."""
    return [EventBridgeSink(), WebhookSink(), KafkaSink()]


# --- sends (the delivery engine calls these with no transaction open) ---------------------


def _event(delivery: Delivery) -> dict[str, Any]:
    event = delivery.payload.get("event")
    if not isinstance(event, dict) or "event_type" not in event:
        raise DeliveryError(
            "The delivery holds no event.", outcome=Outcome.PERMANENT, error_code="bad_payload"
        )
    return event


def eventbridge_detail(event: dict[str, Any]) -> dict[str, Any]:
    if event["event_type"] == "ticket.created":
        return selectors.ticket_received_detail(event=event)
    return event


def eventbridge_send(delivery: Delivery) -> SendResult:
    if not settings.EVENTS_EVENTBRIDGE_BUS:
        raise DeliveryError(
            "EVENTS_EVENTBRIDGE_BUS is not set any more: nowhere to put the event.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    event = _event(delivery)
    detail_type = DETAIL_TYPES.get(event["event_type"], "")
    if not detail_type:
        raise DeliveryError(
            f"{event['event_type']} is not an exported event type.",
            outcome=Outcome.PERMANENT,
            error_code="not_exported",
        )
    entry = eventbridge_entry(
        detail_type=detail_type, detail=eventbridge_detail(event), resources=[]
    )
    if len(json.dumps(entry).encode()) > MAX_ENTRY_BYTES:
        raise DeliveryError(
            "The event is larger than EventBridge's 256 KiB limit.",
            outcome=Outcome.PERMANENT,
            error_code="too_large",
        )
    event_id = eventbridge_put(entry=entry)
    return SendResult(
        external_id=event_id,
        request_summary={
            "bus": entry["EventBusName"],
            "detail_type": detail_type,
            "event_id": event.get("id"),
        },
    )


def webhook_body(event: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): the event envelope as compact JSON."""
    return json.dumps(event, separators=(",", ":"), default=str).encode()


def webhook_send(delivery: Delivery) -> SendResult:
    event = _event(delivery)
    webhook = OutgoingWebhook.objects.filter(pk=delivery.payload.get("webhook_id")).first()
    if webhook is None or not webhook.is_active:
        raise DeliveryError(
            "The outgoing webhook was deleted or deactivated.",
            outcome=Outcome.PERMANENT,
            error_code="webhook_inactive",
        )
    if not settings.OUTGOING_WEBHOOKS_ENABLED:
        raise DeliveryError(
            "OUTGOING_WEBHOOKS_ENABLED is off.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    body = webhook_body(event)
    event_id = str(event.get("id"))
    headers = {
        SIGNATURE_HEADER: signature_header(secret=webhook.secret, body=body),
        "Support-Event-Id": event_id,
        "Support-Event-Type": str(event["event_type"]),
        "Idempotency-Key": event_id,
    }
    return webhook_post(url=webhook.url, body=body, headers=headers)


def kafka_send(delivery: Delivery) -> SendResult:
    if not settings.EVENTS_KAFKA_BOOTSTRAP_SERVERS:
        raise DeliveryError(
            "EVENTS_KAFKA_BOOTSTRAP_SERVERS is not set any more.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    event = _event(delivery)
    topic = str(delivery.payload.get("topic") or kafka_topic(str(event["event_type"])))
    key = str(event.get("ticket_id") or event.get("id"))
    record = kafka_produce(
        topic=topic,
        key=key,
        value=event,
        headers={"event_id": str(event.get("id")), "event_type": str(event["event_type"])},
    )
    return SendResult(
        external_id=record,
        request_summary={"topic": topic, "key": key, "event_id": event.get("id")},
    )


def _target_kind(
    name: str,
    label: str,
    send: Callable[[Delivery], SendResult],
    *,
    max_attempts_setting: str,
    base: float,
    cap: float,
) -> TargetKind:
    """A kind whose attempt budget is a setting, read when a delivery is scheduled."""
    return TargetKind(
        name=name,
        label=label,
        send=send,
        schedule=lambda: Schedule(
            max_attempts=int(getattr(settings, max_attempts_setting)), base=base, cap=cap
        ),
    )


def target_kinds() -> list[TargetKind]:
    """Registered in ``EventsOutConfig.ready()``; schedules read settings when used."""
    return [
        _target_kind(
            EVENTBRIDGE_KIND,
            "Event to Amazon EventBridge",
            eventbridge_send,
            max_attempts_setting="EVENTS_EVENTBRIDGE_MAX_ATTEMPTS",
            base=2.0,
            cap=300.0,
        ),
        _target_kind(
            WEBHOOK_KIND,
            "Event to an outgoing webhook",
            webhook_send,
            max_attempts_setting="OUTGOING_WEBHOOKS_MAX_ATTEMPTS",
            base=10.0,
            cap=3600.0,
        ),
        _target_kind(
            KAFKA_KIND,
            "Event to Kafka",
            kafka_send,
            max_attempts_setting="EVENTS_KAFKA_MAX_ATTEMPTS",
            base=2.0,
            cap=300.0,
        ),
    ]


# --- erasure -----------------------------------------------------------------------------


def events_out_erase(subject: Any) -> int:
    """Erasure hook (``tickets.context.privacy``): the event copies these deliveries hold,
    and their attempt logs, are redacted like the outbox payloads they came from."""
    changed = 0
    deliveries = Delivery.objects.filter(
        target_kind__in=KINDS,
        subject_type="ticket",
        subject_id__in=[str(pk) for pk in subject.ticket_ids],
    )
    for delivery in deliveries:
        delivery.payload = subject.redact_json(delivery.payload)
        delivery.last_error = subject.redact(delivery.last_error)
        delivery.save(update_fields=["payload", "last_error"])
        changed += 1
    for attempt in Attempt.objects.filter(delivery__in=deliveries):
        attempt.request_summary = subject.redact_json(attempt.request_summary)
        attempt.response_summary = subject.redact(attempt.response_summary)
        attempt.error = subject.redact(attempt.error)
        attempt.save(update_fields=["request_summary", "response_summary", "error"])
    return changed


def erasure_hook_register() -> None:
    from tickets.context.privacy import register_erasure_hook

    register_erasure_hook("events-out", events_out_erase)


# --- configuration -------------------------------------------------------------------------


def outgoing_webhook_save(
    *, webhook: OutgoingWebhook, actor: Any, changed: Sequence[str] = ()
) -> OutgoingWebhook:
    """Save a webhook a supervisor configured, audited (the secret is never logged)."""
    created = webhook.pk is None
    webhook.save()
    from support.services import audit_log_record

    audit_log_record(
        actor=actor,
        action="events_out.webhook_created" if created else "events_out.webhook_changed",
        object_type="outgoing_webhook",
        object_id=webhook.pk,
        details={
            "name": webhook.name,
            "url": webhook.url,
            "event_types": list(webhook.event_types),
            "is_active": webhook.is_active,
            "changed": sorted(changed),
        },
    )
    return webhook
