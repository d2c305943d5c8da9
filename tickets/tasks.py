"""Celery tasks of the core (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task

from tickets.services.sla import sla_check, tickets_sla_reapply


@shared_task(acks_late=True, max_retries=0, soft_time_limit=50, time_limit=58)
def sla_check_task() -> int:
    """Beat, every minute: record SLA warnings and breaches. Idempotent (each
    (ticket, target, kind) once, by a unique constraint), so a late ack or an
    overlapping run does no harm. Returns how many were recorded."""
    return len(sla_check().recorded)


@shared_task(acks_late=True, max_retries=0)
def sla_reapply_task() -> int:
    """After an SLA policy or calendar edit: recompute the open tickets' due times.
    Idempotent (a ticket whose due times do not change is not written)."""
    return tickets_sla_reapply()
