"""Celery tasks of the routing app (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task

from routing import services


@shared_task(acks_late=True, max_retries=3, soft_time_limit=90, time_limit=120)
def route_ticket_task(ticket_id: int, attempt_key: str = "initial") -> int:
    """Idempotent: one decision per (ticket, attempt key)."""
    return services.routing_decide(ticket_id=ticket_id, attempt_key=attempt_key).pk


@shared_task(acks_late=True, max_retries=0, soft_time_limit=30, time_limit=60)
def ticketing_sync_task(delivery_id: int) -> None:
    """One attempt; schedules the next one (1, 2, 4, 8, 16 s) until success or dead letter."""
    delay = services.ticketing_sync_attempt(delivery_id=delivery_id)
    if delay is not None:
        ticketing_sync_task.apply_async((delivery_id,), countdown=delay)


@shared_task(soft_time_limit=60, time_limit=90)
def ticketing_sync_sweep_task() -> int:
    return services.ticketing_sync_sweep()


@shared_task(soft_time_limit=300, time_limit=360)
def routing_decision_purge_task() -> int:
    return services.routing_decision_purge()


@shared_task(soft_time_limit=30, time_limit=60)
def service_status_poll_task() -> int:
    return services.service_status_poll()
