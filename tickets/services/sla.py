"""SLA writes: the clocks of a ticket (due times, pause and resume) and the checker that
records warnings and breaches, escalates and publishes ``sla.warning`` / ``sla.breached``.

The rules are in docs/sla.md; the arithmetic in ``tickets.sla``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from support.events import event_record, event_time
from tickets.models import (
    PRIORITY_RANK,
    SlaEvent,
    SlaEventKind,
    SlaPolicy,
    SlaTarget,
    Ticket,
    TicketStatus,
)
from tickets.sla import (
    DueTimes,
    PolicySpec,
    due_times,
    policy_match,
    sla_policies,
    sla_policies_forget,
    sla_policy_by_id,
    stopped_seconds,
)

logger = logging.getLogger(__name__)

#: The resolution clock stops while the ticket waits on the customer (pending) and once
#: it is resolved or closed; it runs while new or open.
CLOCK_STOPPED = frozenset({TicketStatus.PENDING, TicketStatus.RESOLVED, TicketStatus.CLOSED})
#: The first-response clock stops while the ticket is resolved or closed (nothing to
#: answer until it is reopened); it runs while new, open or pending.
FIRST_RESPONSE_STOPPED = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})
#: Statuses in which a missing first reply still counts.
FIRST_RESPONSE_OPEN = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
RESOLUTION_OPEN = (TicketStatus.NEW, TicketStatus.OPEN)


# --- a ticket's clocks -----------------------------------------------------------------
#
# ``Ticket.sla_pauses`` records every stop of the resolution clock, whatever the policy
# (or none): ``{"start": iso, "end": iso, "first_response": bool}`` (``first_response``:
# the ticket was resolved or closed, so the first-response clock stood still too). Each
# policy measures the stops in its own calendar when due times are computed, so a
# weekend spent pending is no time for an office-hours policy and 48 hours for a 24/7
# one. ``sla_paused_at`` is the start of the stop in progress. A ticket stopped
# before the stops were recorded has only ``sla_paused_seconds`` (business seconds of the
# policy of the time): that number still counts as it is, and moves into the list as
# ``{"seconds": n}`` when the first stop is recorded. With a list, ``sla_paused_seconds``
# is the resolution clock's stopped time in the current policy's calendar.


def _pauses(ticket: Ticket) -> list[dict[str, Any]]:
    """``ticket.sla_pauses`` as a list: a row read by raw SQL (the customer-message
    UPDATE … RETURNING of ``tickets.thread_rules``) holds the JSON text."""
    value = ticket.sla_pauses
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


def _stops(ticket: Ticket) -> tuple[int, list[tuple[datetime, datetime, bool]]]:
    """The legacy stopped seconds and the recorded stops of a ticket."""
    legacy = 0
    stops: list[tuple[datetime, datetime, bool]] = []
    for item in _pauses(ticket):
        if "seconds" in item:
            legacy += int(item["seconds"])
        else:
            stops.append(
                (
                    datetime.fromisoformat(item["start"]),
                    datetime.fromisoformat(item["end"]),
                    bool(item.get("first_response")),
                )
            )
    return legacy, stops


def _ticket_due_times(
    ticket: Ticket,
    policy: PolicySpec | None,
    *,
    created_at: datetime,
    extra: tuple[datetime, datetime, bool] | None = None,
) -> DueTimes:
    """The ticket's due times under ``policy``, its stops measured in the policy's
    calendar (``extra``: a stop not recorded yet, counted as if it were)."""
    if policy is None:
        return due_times(None, created_at=created_at)
    if not _pauses(ticket) and extra is None:  # never stopped, or stopped before the record
        return due_times(policy, created_at=created_at, paused_seconds=ticket.sla_paused_seconds)
    legacy, stops = _stops(ticket)
    if not _pauses(ticket):
        legacy = ticket.sla_paused_seconds
    if extra is not None:
        stops.append(extra)
    cal = policy.calendar
    resolution = legacy + stopped_seconds(cal, [(s, e) for s, e, _ in stops])
    # only the stops before the first reply: the clock stopped for good then
    first_response = stopped_seconds(
        cal, [(s, e) for s, e, fr in stops if fr], until=ticket.first_response_at
    )
    return due_times(
        policy,
        created_at=created_at,
        paused_seconds=resolution,
        first_response_paused_seconds=first_response,
    )


def _sla_apply(ticket: Ticket, policy: PolicySpec | None, *, now: datetime) -> None:
    due = _ticket_due_times(ticket, policy, created_at=ticket.created_at or now)
    ticket.sla_policy_id = due.policy_id
    ticket.first_response_due_at = due.first_response_due_at
    ticket.resolution_due_at = due.resolution_due_at
    if policy is not None and _pauses(ticket):
        legacy, stops = _stops(ticket)
        measured = stopped_seconds(policy.calendar, [(s, e) for s, e, _ in stops])
        ticket.sla_paused_seconds = legacy + measured


def ticket_sla_recompute(ticket: Ticket, *, now: datetime | None = None) -> list[str]:
    """Match the policy for the ticket's priority, team and channel and set its due
    times (from its creation, plus the time its clocks were stopped, measured in the
    policy's calendar). Changes the instance only; returns the fields to save."""
    now = now or timezone.now()
    policy = policy_match(
        sla_policies(), priority=ticket.priority, team_id=ticket.team_id, channel=ticket.channel
    )
    _sla_apply(ticket, policy, now=now)
    return ["sla_policy", "first_response_due_at", "resolution_due_at", "sla_paused_seconds"]


# --- policies edited: the open tickets follow ------------------------------------------

SLA_FIELDS = ("sla_policy_id", "first_response_due_at", "resolution_due_at", "sla_paused_seconds")


def tickets_sla_reapply(*, batch_size: int = 500) -> int:
    """Recompute the due times of every ticket still running a clock (new, open or
    pending; merged tickets excluded) from the active policies as they are now, after a
    supervisor edited a policy, a calendar, its hours or holidays. A ticket keeps its
    creation time and the business time its resolution clock was stopped; warnings and
    breaches already recorded stay in its history, and the checker judges the new due
    times from its next run. Each batch is read and written under row locks, so an agent's
    priority or team change at the same moment is never overwritten with due times for
    the old values. Idempotent: a ticket whose due times do not change is not written.
    Returns how many tickets changed."""
    sla_policies_forget()  # this process may hold the policies from before the edit
    ids = list(
        Ticket.objects.filter(status__in=FIRST_RESPONSE_OPEN, merged_into__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    total = 0
    for start in range(0, len(ids), batch_size):
        with transaction.atomic():
            batch = (
                Ticket.objects.select_for_update(of=("self",))
                .filter(
                    pk__in=ids[start : start + batch_size],
                    status__in=FIRST_RESPONSE_OPEN,
                    merged_into__isnull=True,
                )
                .order_by("pk")
            )
            changed: list[Ticket] = []
            for ticket in batch:
                before = tuple(getattr(ticket, f) for f in SLA_FIELDS)
                ticket_sla_recompute(ticket)
                if tuple(getattr(ticket, f) for f in SLA_FIELDS) != before:
                    changed.append(ticket)
            if changed:
                Ticket.objects.bulk_update(
                    changed,
                    [
                        "sla_policy",
                        "first_response_due_at",
                        "resolution_due_at",
                        "sla_paused_seconds",
                    ],
                )
            total += len(changed)
    if total:
        logger.info("sla policies changed: due times of %d open tickets recomputed", total)
    return total


def sla_policies_changed() -> None:
    """A policy, calendar, business hours or holiday was saved or deleted: once the change
    is committed, a worker recomputes the open tickets' due times
    (``tickets_sla_reapply``)."""
    from tickets.tasks import sla_reapply_task

    transaction.on_commit(sla_reapply_task.delay)


def _stop_record(ticket: Ticket, *, status: str, end: datetime) -> None:
    """Move the stop in progress (from ``sla_paused_at``, the ticket ``status`` all along)
    into ``sla_pauses``, whatever the policy: a ticket with no policy now may have one
    later, and the time it was stopped counts then."""
    assert ticket.sla_paused_at is not None
    pauses = _pauses(ticket)
    if not pauses and ticket.sla_paused_seconds:
        pauses.append({"seconds": int(ticket.sla_paused_seconds)})  # stopped before the record
    pauses.append(
        {
            "start": ticket.sla_paused_at.isoformat(),
            "end": end.isoformat(),
            "first_response": status in FIRST_RESPONSE_STOPPED,
        }
    )
    ticket.sla_pauses = pauses


def ticket_sla_status_change(ticket: Ticket, *, before: str, now: datetime) -> list[str]:
    """Stop the resolution clock when the ticket leaves new/open, restart it when it comes
    back (the stop is recorded, and the due times move by its business time in the
    calendar of the ticket's policy). The first-response clock also stands still while the
    ticket is resolved or closed: a change between pending and resolved/closed closes one
    stop and opens the next. Changes the instance only; returns the fields to save."""
    was_running = before not in CLOCK_STOPPED
    runs = ticket.status not in CLOCK_STOPPED
    if was_running and not runs and ticket.sla_paused_at is None:
        ticket.sla_paused_at = now
        return ["sla_paused_at"]
    if ticket.sla_paused_at is None or was_running:
        return []
    reopened = runs
    first_response_turns = (before in FIRST_RESPONSE_STOPPED) != (
        ticket.status in FIRST_RESPONSE_STOPPED
    )
    if not reopened and not first_response_turns:
        return []
    _stop_record(ticket, status=before, end=now)
    ticket.sla_paused_at = None if reopened else now
    policy = sla_policy_by_id(ticket.sla_policy_id)
    if policy is None:  # no policy (any more): the stop is kept for the next one
        return ["sla_paused_at", "sla_pauses"]
    _sla_apply(ticket, policy, now=now)
    return [
        "sla_paused_at",
        "sla_pauses",
        "sla_paused_seconds",
        "first_response_due_at",
        "resolution_due_at",
    ]


def tickets_sla_resume(pairs: list[tuple[Ticket, str]], *, now: datetime) -> None:
    """After customer messages reopened tickets (``tickets.thread_rules``): restart their
    resolution clocks. One UPDATE per reopened ticket (rare), none otherwise."""
    for ticket, before in pairs:
        if ticket.status == before or ticket.sla_paused_at is None:
            continue
        fields = ticket_sla_status_change(ticket, before=before, now=now)
        if fields:
            Ticket.objects.filter(pk=ticket.pk).update(**{f: getattr(ticket, f) for f in fields})


# --- the checker ----------------------------------------------------------------------


@dataclass
class SlaCheckResult:
    recorded: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: int = 0


def _warning_window() -> timedelta:
    return timedelta(minutes=int(getattr(settings, "SLA_WARNING_MINUTES", 30)))


def _candidates(target: str, kind: str, now: datetime) -> QuerySet[Ticket]:
    due_field = f"{target}_due_at"
    qs = Ticket.objects.filter(merged_into__isnull=True, **{f"{due_field}__isnull": False})
    if target == SlaTarget.FIRST_RESPONSE:
        qs = qs.filter(status__in=FIRST_RESPONSE_OPEN, first_response_at__isnull=True)
    else:
        qs = qs.filter(status__in=RESOLUTION_OPEN, sla_paused_at__isnull=True)
    if kind == SlaEventKind.BREACHED:
        qs = qs.filter(**{f"{due_field}__lte": now})
    else:  # a warning only before the breach; a missed one is not recorded late
        qs = qs.filter(**{f"{due_field}__gt": now, f"{due_field}__lte": now + _warning_window()})
    done = SlaEvent.objects.filter(ticket=OuterRef("pk"), target=target, kind=kind)
    return qs.filter(~Exists(done)).order_by(due_field, "pk")


def _still_due(ticket: Ticket, target: str, kind: str, now: datetime) -> datetime | None:
    """The due time when the locked row still qualifies (None: it no longer does)."""
    if ticket.merged_into_id is not None:
        return None
    due: datetime | None = getattr(ticket, f"{target}_due_at")
    if due is None:
        return None
    if target == SlaTarget.FIRST_RESPONSE:
        if ticket.first_response_at is not None or ticket.status not in FIRST_RESPONSE_OPEN:
            return None
    elif ticket.sla_paused_at is not None or ticket.status not in RESOLUTION_OPEN:
        return None
    if kind == SlaEventKind.BREACHED:
        return due if due <= now else None
    return due if now < due <= now + _warning_window() else None


def _escalate(ticket: Ticket, policy: SlaPolicy | None, kind: str, label: str) -> list[str]:
    """The policy's escalation through the ticket services; human-readable actions."""
    from tickets.services.lifecycle import ticket_update

    if policy is None or policy.escalate_on != kind:
        return []
    actions: list[str] = []
    reason = f"SLA {label} {kind}"
    if policy.escalate_raise_priority:
        order = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)
        rank = PRIORITY_RANK.get(ticket.priority, 0)
        if rank + 1 < len(order):
            new = order[rank + 1]
            actions.append(f"priority {ticket.priority} → {new}")
            ticket = ticket_update(ticket=ticket, priority=new, reason=reason)
    target_team = policy.escalate_to_team
    if target_team is not None and ticket.team_id != target_team.pk:
        actions.append(f"team → {target_team.name}")
        ticket = ticket_update(ticket=ticket, team=target_team, reason=reason)
    return actions


def sla_event_record(
    *, ticket_id: int, target: str, kind: str, now: datetime | None = None
) -> SlaEvent | None:
    """Record one warning or breach of a ticket's target, once.

    Locks the ticket (skipping it when another transaction holds it: the next run takes
    it), checks it still qualifies, inserts the ``SlaEvent`` (its unique constraint makes
    a second run a no-op), applies the policy's escalation, writes a timeline entry and
    records the outbox event ``sla.<kind>`` (payload: notes/contract16.md). Returns the
    new event, or None when there was nothing (more) to record.
    """
    from tickets.services.lifecycle import _system_note

    now = now or timezone.now()
    with transaction.atomic():
        ticket = (
            Ticket.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("sla_policy", "sla_policy__escalate_to_team")
            .filter(pk=ticket_id)
            .first()
        )
        if ticket is None:
            return None
        due = _still_due(ticket, target, kind, now)
        if due is None:
            return None
        policy = ticket.sla_policy
        event = _sla_event_insert(ticket, target=target, kind=kind, due=due, policy=policy)
        if event is None:
            return None  # recorded already (a concurrent run)
        label = SlaTarget(target).label.lower()
        priority, team_id = ticket.priority, ticket.team_id
        actions = _escalate(ticket, policy, kind, label)
        if actions:
            event.escalation = actions
            event.save(update_fields=["escalation"])
        verb = "breached" if kind == SlaEventKind.BREACHED else "due soon"
        local_due = timezone.localtime(due)
        text = f"SLA {label} {verb}: due {local_due:%Y-%m-%d %H:%M %Z}"
        if actions:
            text += f" (escalated: {'; '.join(actions)})"
        _system_note(
            ticket, None, text, {"sla": {"target": target, "kind": kind, "escalation": actions}}
        )
        _sla_event_publish(
            event, ticket=ticket, priority=priority, team_id=team_id, escalation=actions
        )
    return event


def _sla_event_insert(
    ticket: Ticket,
    *,
    target: str,
    kind: str,
    due: datetime,
    policy: SlaPolicy | None,
    stopped_at: datetime | None = None,
) -> SlaEvent | None:
    """The ``SlaEvent`` row, or None when (ticket, target, kind) has one already."""
    try:
        with transaction.atomic():
            return SlaEvent.objects.create(
                ticket=ticket,
                target=target,
                kind=kind,
                due_at=due,
                stopped_at=stopped_at,
                policy_name=policy.name if policy else "",
            )
    except IntegrityError:
        return None


def _sla_event_publish(
    event: SlaEvent, *, ticket: Ticket, priority: str, team_id: int | None, escalation: list[str]
) -> None:
    """The outbox event ``sla.<kind>`` of a recorded warning or breach (docs/sla.md)."""
    payload: dict[str, object] = {
        "ticket_id": ticket.pk,
        "ticket_ref": ticket.number,
        "target": event.target,
        "due_at": event_time(event.due_at),
        "priority": priority,
        "team_id": team_id,
        "policy": event.policy_name,
        "escalation": escalation,
    }
    if event.stopped_at is not None:
        payload["stopped_at"] = event_time(event.stopped_at)
    event_record(
        f"sla.{event.kind}", aggregate_type="ticket", aggregate_id=ticket.pk, payload=payload
    )


def _first_response_due_settle(ticket: Ticket, *, stopped_at: datetime) -> None:
    """A first reply sent while the ticket is resolved or closed (its first-response clock
    stopped): the first-response due time counts the stop in progress up to the reply,
    as it will once the stop is recorded, so the reply is judged by the clock that ran.
    Written to the row (locked by the caller) when it moves."""
    if ticket.sla_paused_at is None or ticket.status not in FIRST_RESPONSE_STOPPED:
        return
    policy = sla_policy_by_id(ticket.sla_policy_id)
    if policy is None:
        return
    stop = (ticket.sla_paused_at, stopped_at, True)
    due = _ticket_due_times(
        ticket, policy, created_at=ticket.created_at or stopped_at, extra=stop
    ).first_response_due_at
    if due != ticket.first_response_due_at:
        ticket.first_response_due_at = due
        Ticket.objects.filter(pk=ticket.pk).update(first_response_due_at=due)


def sla_stopped_late(
    ticket: Ticket, *, target: str, stopped_at: datetime, how: str | None = None
) -> SlaEvent | None:
    """The clock of ``target`` stopped at ``stopped_at`` (the first reply was sent, the
    ticket resolved, or closed without either: ``how`` says so on the note, "closed")
    after its due time, and no checker run saw it overdue while it ran
    (the checker looks at running clocks only, once a minute): record the breach now, as
    the attainment counts it, once per (ticket, target) like the checker's.

    Called with the ticket's row locked, in the transaction that stopped the clock. The
    event keeps ``stopped_at``; nothing is escalated (the ticket was answered or resolved)
    and the outbox event ``sla.breached`` carries ``stopped_at`` too, so the alerts leave
    it alone (nothing is left to act on) while integrations get every breach. A merged
    ticket is not judged."""
    from tickets.services.lifecycle import _system_note

    if target == SlaTarget.FIRST_RESPONSE:
        _first_response_due_settle(ticket, stopped_at=stopped_at)
    due: datetime | None = getattr(ticket, f"{target}_due_at")
    if due is None or stopped_at <= due or ticket.merged_into_id is not None:
        return None
    kind = SlaEventKind.BREACHED
    if SlaEvent.objects.filter(ticket=ticket, target=target, kind=kind).exists():
        return None  # the checker saw it while it ran
    event = _sla_event_insert(
        ticket, target=target, kind=kind, due=due, policy=ticket.sla_policy, stopped_at=stopped_at
    )
    if event is None:
        return None  # a checker run recorded it meanwhile
    label = SlaTarget(target).label.lower()
    stop = how or ("answered" if target == SlaTarget.FIRST_RESPONSE else "resolved")
    text = (
        f"SLA {label} breached: due {timezone.localtime(due):%Y-%m-%d %H:%M %Z}, "
        f"{stop} {timezone.localtime(stopped_at):%Y-%m-%d %H:%M %Z}"
    )
    _system_note(
        ticket,
        None,
        text,
        {"sla": {"target": target, "kind": kind, "escalation": [], "stopped_late": True}},
    )
    _sla_event_publish(
        event, ticket=ticket, priority=ticket.priority, team_id=ticket.team_id, escalation=[]
    )
    return event


def sla_check(*, now: datetime | None = None, batch_size: int | None = None) -> SlaCheckResult:
    """Find tickets past due or within the warning window (``SLA_WARNING_MINUTES``) and
    record each (ticket, target, kind) once; at most ``batch_size``
    (``SLA_CHECK_BATCH_SIZE``) per target and kind per run, most overdue first. Breaches
    are recorded before warnings."""
    now = now or timezone.now()
    limit = batch_size or int(getattr(settings, "SLA_CHECK_BATCH_SIZE", 200))
    result = SlaCheckResult()
    for kind in (SlaEventKind.BREACHED, SlaEventKind.WARNING):
        for target in (SlaTarget.FIRST_RESPONSE, SlaTarget.RESOLUTION):
            ids = list(_candidates(target, kind, now).values_list("pk", flat=True)[:limit])
            for ticket_id in ids:
                if sla_event_record(ticket_id=ticket_id, target=target, kind=kind, now=now):
                    result.recorded.append((ticket_id, str(target), str(kind)))
                else:
                    result.skipped += 1
    if result.recorded:
        logger.info("sla check recorded %d events", len(result.recorded))
    return result
