from __future__ import annotations

from typing import Any

from celery import shared_task

from alerts.services import alert_rules_evaluate, sla_alerts_resolve, sla_event_handle
from support.events import SUBSCRIBER_TASK_OPTIONS


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def alert_rules_evaluate_task() -> None:
    """The beat's alarm evaluation (idempotent: one run at a time, rules not yet due are
    skipped)."""
    alert_rules_evaluate()


@shared_task(**SUBSCRIBER_TASK_OPTIONS)
def sla_event_handle_task(
    self: Any, event_id: int, event_type: str, payload: dict[str, Any]
) -> int | None:
    """Raise (or escalate) the SLA alert of an ``sla.warning`` / ``sla.breached`` outbox
    event (enqueued by its subscriber, ``alerts.apps.on_sla_event``). Idempotent through
    the event ids the alert keeps: a task delivered twice raises and notifies once. The
    database going away is retried with backoff a bounded number of times
    (``support.events.SUBSCRIBER_TASK_OPTIONS``: seconds, shorter than a failover); after
    that, or on anything else, Celery logs the failure and the next rule evaluation (once
    a minute) raises the alert instead while the ticket's clock still runs
    (``alerts.services.sla_alerts_catch_up``, events of the last day), under this event's
    id: one alert, however the two meet."""
    raised = sla_event_handle(event_id=event_id, event_type=event_type, payload=payload)
    return raised.alert.pk if raised is not None else None


@shared_task(**SUBSCRIBER_TASK_OPTIONS)
def sla_alerts_resolve_task(self: Any, ticket_ids: list[int]) -> list[int]:
    """Resolve the open SLA alerts of ``ticket_ids`` whose clock has stopped (enqueued by
    ``alerts.apps.on_ticket_events`` for a relay batch's ticket and message events).
    Idempotent: a resolved alert is skipped. Retried as :func:`sla_event_handle_task`; an
    alert it leaves open is resolved by the next rule evaluation, which checks them all."""
    return sla_alerts_resolve(ticket_ids=ticket_ids)
