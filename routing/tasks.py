"""Celery tasks of the routing app (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task

from routing import services


@shared_task(acks_late=True, max_retries=3, soft_time_limit=90, time_limit=120)
def route_ticket_task(ticket_id: int, attempt_key: str = "initial") -> int:
    """Idempotent: one decision per (ticket, attempt key)."""
    return services.routing_decide(ticket_id=ticket_id, attempt_key=attempt_key).pk


@shared_task(soft_time_limit=300, time_limit=360)
def routing_decision_purge_task() -> int:
    return services.routing_decision_purge()


@shared_task(soft_time_limit=30, time_limit=60)
def service_status_poll_task() -> int:
    return services.service_status_poll()
