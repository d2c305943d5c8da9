"""Reads of the delivery engine, for the admin, feature panels and ``/health``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from support.delivery.models import (
    FINISHED_STATUSES,
    OPEN_STATUSES,
    Attempt,
    Circuit,
    CircuitState,
    Delivery,
    Outcome,
    OutcomeReplay,
)
from support.models import DeliveryStatus
from support.sweeps import RedrivePolicy

#: How an integration's sweep re-runs the hook of a finished delivery whose outcome its
#: own state does not show (``services.deliveries_outcome_replay``): at once, then 2, 4,
#: 8 and 16 minutes after each failed replay (never under a minute, whatever a sweep
#: asks); due again 16 minutes after the fifth, it is given up, for a supervisor.
OUTCOME_REPLAY = RedrivePolicy(wait_seconds=120.0, floor_seconds=60.0, max_redrives=5)


def delivery_list(
    *, target_kind: str | None = None, status: str | None = None
) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.all()
    if target_kind:
        deliveries = deliveries.filter(target_kind=target_kind)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries


def delivery_get(*, target_kind: str, idempotency_key: str) -> Delivery | None:
    return Delivery.objects.filter(target_kind=target_kind, idempotency_key=idempotency_key).first()


def deliveries_for_subject(
    *, subject_type: str, subject_ids: list[Any], target_kind: str | None = None
) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(
        subject_type=subject_type, subject_id__in=[str(pk) for pk in subject_ids]
    )
    if target_kind:
        deliveries = deliveries.filter(target_kind=target_kind)
    return deliveries


def circuits_paused() -> QuerySet[Circuit]:
    """Targets not taking deliveries right now: open (cooling off) or half-open (one
    probe in flight)."""
    now = timezone.now()
    return Circuit.objects.filter(
        Q(state=CircuitState.OPEN, open_until__gt=now) | Q(state=CircuitState.HALF_OPEN)
    )


def failures_since(*, target_kind: str, since: datetime) -> int:
    """Sends of ``target_kind`` that failed since ``since``: every attempt that did not
    succeed and was not pending (a lost one included; each retry counts, when it was
    made), plus the deliveries created since then that an open circuit holds back before
    their first attempt. The breaker stops attempts after ``DELIVERY_CIRCUIT_FAILURES``
    failures, so counting attempts alone levels off at a few per cool-off whatever the
    traffic; each held delivery is a send the target could not take, and it counts again
    as an attempt if the probe fails it. Attempts read the partial index on failed
    attempts' ``created_at``."""
    failed = (
        Attempt.objects.filter(created_at__gte=since, delivery__target_kind=target_kind)
        .exclude(outcome=Outcome.SUCCESS)
        .exclude(outcome=Outcome.PENDING)  # the target is working on it: no failure
        .count()
    )
    paused = circuits_paused().filter(
        target_kind=OuterRef("target_kind"), target_key=OuterRef("target_key")
    )
    held = Delivery.objects.filter(
        target_kind=target_kind,
        created_at__gte=since,
        status__in=OPEN_STATUSES,
        total_attempts=0,
    ).filter(Exists(paused))
    return failed + held.count()


def circuit_get(*, target_kind: str, target_key: str = "") -> Circuit | None:
    return Circuit.objects.filter(target_kind=target_kind, target_key=target_key).first()


def circuits_paused_count() -> int:
    """How many targets are paused now (:func:`circuits_paused`): ``/health``'s
    ``circuits_open`` and the ``support_delivery_circuits_open`` gauge."""
    return circuits_paused().count()


def possible_duplicates_count() -> int:
    """Deliveries that may have reached their recipient twice, all time (the partial index
    ``delivery_duplicate_idx``): ``/health``'s ``possible_duplicates`` and the
    ``support_deliveries_possible_duplicates`` gauge."""
    return Delivery.objects.filter(possible_duplicate=True).count()


def delivery_health() -> dict[str, int]:
    """Counts only (``/health`` is public): dead letters waiting for a re-drive, targets
    paused by their circuit, deliveries that may have reached their recipient twice."""
    return {
        "dead_letters": Delivery.objects.filter(status=DeliveryStatus.DEAD).count(),
        "circuits_open": circuits_paused_count(),
        "possible_duplicates": possible_duplicates_count(),
    }


def dead_letters_by_kind() -> dict[str, int]:
    """Dead letters waiting for a re-drive now (all time), by target kind: one aggregate
    over the partial index ``delivery_dead_idx`` (what ``support_deliveries_dead_letters``
    exports)."""
    rows = (
        Delivery.objects.filter(status=DeliveryStatus.DEAD)
        .values("target_kind")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("target_kind", "n")
    )
    return dict(rows)


def outcome_replay_due_q(*, now: datetime, stale_seconds: float) -> Q:
    """Finished deliveries (an outer query's ``Delivery`` rows) whose hook a sweep may
    replay now (:data:`OUTCOME_REPLAY`): never replayed, or their wait after the last
    replay is over, and not given up. For an integration's sweep to choose its batch among
    these only, so replays that keep failing wait (and then stop) instead of being taken
    ahead of newer ones every run."""
    replay = OutcomeReplay.objects.filter(delivery=OuterRef("pk"))
    due = replay.filter(OUTCOME_REPLAY.due_q(now, stale_seconds), given_up_at__isnull=True)
    return Q(status__in=FINISHED_STATUSES) & (~Exists(replay) | Exists(due))
