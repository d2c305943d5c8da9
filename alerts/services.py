"""Writes of the alerts app: evaluating rules, raising / acknowledging / resolving alerts
(every state change recorded in ``AlertEvent``), SLA events, notifications.

**Evaluation** (:func:`alert_rules_evaluate`, the beat task's one call): one run at a time
(a Redis lock); the metric sources are read in-process, never inside a transaction: every
source for the first window, then for each further distinct window only the sources its
rules read (``_RunMetrics``); each rule's value is stored as a
``RuleEvaluation``; after ``datapoints_to_alarm`` consecutive breaching evaluations the rule's
alert fires (one open alert per fingerprint: a unique partial index), and when an evaluation
no longer breaches (no data counts as not breaching) an ``auto_resolve`` rule's alert is
resolved. A rule evaluated less than half a period ago is skipped, so a repeated beat adds
no datapoint.

**Notifications** are ``support.delivery`` deliveries, one per (alert state change,
target), of kinds ``alert_email``, ``alert_slack``, ``alert_pagerduty`` and ``alert_sns``
(the adapters in ``alerts.adapters``). A trigger goes to the targets of the alert's tier
(or the rule's own targets); acknowledge and resolve go to the targets that got the
trigger, so PagerDuty receives the matching ``event_action`` with the same ``dedup_key``.
A target deactivated meanwhile still gets the resolve (only the resolve), so what the
trigger opened there is closed.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.utils import Error as DatabaseError
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from prometheus_client.core import Metric

from alerts import selectors
from alerts.adapters import AlertMessage, NotifyAdapter
from alerts.adapters.email import email_send
from alerts.adapters.pagerduty import pagerduty_send
from alerts.adapters.slack import slack_send
from alerts.adapters.sns import sns_send
from alerts.models import (
    OPEN_STATES,
    SEVERITY_RANK,
    Aggregation,
    Alert,
    AlertAction,
    AlertEvent,
    AlertRule,
    AlertState,
    AlertTarget,
    Comparison,
    RuleEvaluation,
    Severity,
    TargetKind,
)
from support import metrics as support_metrics
from support.db import DATABASE_GONE
from support.delivery.models import Delivery, Outcome
from support.delivery.registry import DeliveryError, Schedule, SendResult
from support.delivery.registry import TargetKind as DeliveryKind
from support.delivery.services import delivery_enqueue
from support.events import event_record
from support.models import OutboxEvent
from support.redis_client import Lease
from support.services import audit_log_record
from support.text import readable_time
from tickets.models import SlaTarget, Ticket
from tickets.selectors import SLA_FIRST_RESPONSE_STATUSES, sla_warning_window

logger = logging.getLogger(__name__)

LOCK_KEY = "alerts:evaluate-lock"
RULE_PREFIX = "rule:"
DELIVERY_KINDS: dict[str, str] = {
    TargetKind.EMAIL: "alert_email",
    TargetKind.SLACK: "alert_slack",
    TargetKind.PAGERDUTY: "alert_pagerduty",
    TargetKind.SNS: "alert_sns",
}
ADAPTERS: dict[str, NotifyAdapter] = {
    TargetKind.EMAIL: email_send,
    TargetKind.SLACK: slack_send,
    TargetKind.PAGERDUTY: pagerduty_send,
    TargetKind.SNS: sns_send,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    Comparison.GT: operator.gt,
    Comparison.GTE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LTE: operator.le,
}


class AlertStateError(ValueError):
    """The change asked for does not apply to the alert's state (e.g. acknowledging a
    resolved alert)."""


# --- notifications ----------------------------------------------------------------------


def _alert_url(alert: Alert) -> str:
    return f"{settings.SITE_URL}{reverse('alerts:detail', args=[alert.pk])}"


def _message(alert: Alert, action: str, actor: Any = None) -> AlertMessage:
    return AlertMessage(
        action=action,
        alert_id=alert.pk,
        title=alert.title,
        summary=alert.summary,
        severity=alert.severity,
        state=alert.state,
        url=_alert_url(alert),
        dedup_key=alert.dedup_key,
        actor=str(actor.get_username()) if getattr(actor, "is_authenticated", False) else "",
        source=alert.fingerprint.split(":", 1)[0],
        details={k: v for k, v in alert.details.items() if k != "events"},
    )


def _notify(alert: Alert, event: AlertEvent, action: str, targets: list[AlertTarget]) -> None:
    """Enqueue one delivery per target (inside the caller's transaction; the engine sends
    after commit). The key names the history row, so a repeat adds nothing."""
    message = _message(alert, action, event.actor)
    for target in targets:
        delivery_enqueue(
            kind=DELIVERY_KINDS[target.kind],
            idempotency_key=f"alert-event:{event.pk}:target:{target.pk}",
            target_key=target.target_key,
            subject_type="alert",
            subject_id=alert.pk,
            payload={"target_id": target.pk, "message": message.as_payload()},
        )


def _notify_trigger(alert: Alert, event: AlertEvent) -> None:
    targets = selectors.target_list_for(severity=alert.severity, rule=alert.rule)
    _notify(alert, event, "trigger", targets)
    known = set(alert.notified_target_ids)
    alert.notified_target_ids = sorted(known | {t.pk for t in targets})
    alert.save(update_fields=["notified_target_ids", "updated_at"])


def _notify_followup(alert: Alert, event: AlertEvent, action: str) -> None:
    """Acknowledge goes to the active targets that got the trigger. Resolve goes to every
    target that got (or was queued) the trigger and still exists, deactivated ones too:
    what the trigger opened (a PagerDuty incident, a *FIRING* mail) must be closed, and a
    target switched off while the alert fired would otherwise keep it open for ever."""
    targets = selectors.target_list_by_ids(
        alert.notified_target_ids, include_inactive=action == "resolve"
    )
    _notify(alert, event, action, targets)


ALERT_CHANGED_EVENT = "alert.changed"


def _history(
    alert: Alert, action: str, from_state: str, *, actor: Any = None, note: str = ""
) -> AlertEvent:
    """Record a step of the alert's life, and tell the open dashboards (the event has no
    ticket, so the workbench socket gives it to supervisors only)."""
    event_record(
        ALERT_CHANGED_EVENT,
        aggregate_type="alert",
        aggregate_id=alert.pk,
        payload={
            "alert_id": alert.pk,
            "action": str(action),
            "state": str(alert.state),
            "severity": str(alert.severity),
        },
    )
    return AlertEvent.objects.create(
        alert=alert,
        action=action,
        from_state=from_state,
        to_state=alert.state,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        note=note,
    )


# --- raising, acknowledging, resolving ---------------------------------------------------


@dataclass(frozen=True)
class Raised:
    alert: Alert
    created: bool
    escalated: bool = False


def alert_raise(
    *,
    fingerprint: str,
    title: str,
    summary: str,
    severity: str,
    rule: AlertRule | None = None,
    value: float | None = None,
    details: dict[str, Any] | None = None,
    subject_type: str = "",
    subject_id: str | int = "",
    note: str = "",
) -> Raised:
    """The open alert for ``fingerprint``, firing it (and notifying) if there is none. An
    open alert asked again at a higher severity is escalated (and notified again at that
    tier); otherwise it only takes the new value."""
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .filter(fingerprint=fingerprint, state__in=OPEN_STATES)
            .first()
        )
        if alert is not None:
            if SEVERITY_RANK[Severity(severity)] > SEVERITY_RANK[Severity(alert.severity)]:
                alert.severity = severity
                alert.title, alert.summary = title[:300], summary
                alert.value = value
                alert.details = {**alert.details, **(details or {})}
                alert.save(
                    update_fields=["severity", "title", "summary", "value", "details", "updated_at"]
                )
                event = _history(alert, AlertAction.ESCALATED, alert.state, note=note)
                _notify_trigger(alert, event)
                return Raised(alert, created=False, escalated=True)
            if value is not None and value != alert.value:
                alert.value = value
                alert.save(update_fields=["value", "updated_at"])
            return Raised(alert, created=False)
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=rule,
                    fingerprint=fingerprint,
                    title=title[:300],
                    summary=summary,
                    severity=severity,
                    value=value,
                    details=details or {},
                    subject_type=subject_type,
                    subject_id=str(subject_id),
                )
        except IntegrityError:  # another process opened it first
            opened = selectors.alert_open_get(fingerprint=fingerprint)
            assert opened is not None
            return Raised(opened, created=False)
        event = _history(alert, AlertAction.FIRED, "", note=note)
        _notify_trigger(alert, event)
        return Raised(alert, created=True)


def _locked(alert_id: int) -> Alert:
    alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
    if alert is None:
        raise Alert.DoesNotExist(f"No alert {alert_id}.")
    return alert


def alert_acknowledge(*, alert_id: int, actor: Any, note: str = "") -> Alert:
    """Firing → acknowledged (by a supervisor): recorded, audited, and PagerDuty (and the
    other targets that got the trigger) told."""
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.state != AlertState.FIRING:
            raise AlertStateError(f"The alert is {alert.get_state_display().lower()}.")
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by", "updated_at"])
        event = _history(alert, AlertAction.ACKNOWLEDGED, AlertState.FIRING, actor=actor, note=note)
        audit_log_record(
            actor=actor,
            action="alerts.acknowledged",
            object_type="alert",
            object_id=alert.pk,
            details={"fingerprint": alert.fingerprint},
        )
        _notify_followup(alert, event, "acknowledge")
    return alert


def alert_resolve(*, alert_id: int, actor: Any = None, note: str = "") -> Alert:
    """Firing or acknowledged → resolved, by a supervisor or (``actor`` None) by the
    system when the condition cleared; recorded, audited when a person did it, and the
    targets that got the trigger told."""
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.state not in OPEN_STATES:
            raise AlertStateError("The alert is already resolved.")
        before = alert.state
        alert.state = AlertState.RESOLVED
        alert.resolved_at = timezone.now()
        alert.resolved_by = actor if getattr(actor, "is_authenticated", False) else None
        alert.save(update_fields=["state", "resolved_at", "resolved_by", "updated_at"])
        event = _history(alert, AlertAction.RESOLVED, before, actor=actor, note=note)
        if alert.resolved_by is not None:
            audit_log_record(
                actor=actor,
                action="alerts.resolved",
                object_type="alert",
                object_id=alert.pk,
                details={"fingerprint": alert.fingerprint},
            )
        _notify_followup(alert, event, "resolve")
    return alert


# --- rule evaluation -------------------------------------------------------------------


@dataclass
class EvaluationReport:
    skipped: bool = False  # another evaluation held the lock
    evaluated: int = 0
    fired: list[int] = field(default_factory=list)  # rule ids
    resolved: list[int] = field(default_factory=list)
    sla_resolved: list[int] = field(default_factory=list)  # alert ids
    # alert ids raised (or escalated) for SLA events whose task raised none
    sla_raised: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)  # alert ids: rule disabled or deleted
    # rule ids left as they were: a metric source they read failed (no data is not "clear")
    unavailable: list[int] = field(default_factory=list)
    # rule ids whose evaluation raised (logged with the traceback; the others went on)
    failed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RuleValue:
    value: float | None
    raw_numerator: float | None
    raw_denominator: float | None


def _sum(selector_text: str, families: list[Metric]) -> float:
    return selectors.selector_sum(selectors.selector_parse(selector_text), families)


def rule_value(rule: AlertRule, families: list[Metric], *, now: datetime) -> RuleValue:
    """The rule's value from collected ``families``: the numerator's samples summed (over
    the window, or for a counter its increase since the stored evaluation one window ago),
    divided by the denominator's when the rule has one; None when there is no data (no
    baseline yet for a counter, a zero denominator)."""
    numerator = _sum(rule.metric, families)
    denominator = _sum(rule.denominator, families) if rule.denominator else None
    raw = RuleValue(None, numerator, denominator)
    if rule.aggregation == Aggregation.INCREASE:
        baseline = (
            RuleEvaluation.objects.filter(
                rule=rule,
                evaluated_at__lte=now - timedelta(seconds=rule.window_seconds),
                raw_numerator__isnull=False,
            )
            .order_by("-evaluated_at", "-id")
            .first()
        )
        if baseline is None:
            return raw
        numerator = _increase(numerator, baseline.raw_numerator)
        if denominator is not None:
            denominator = _increase(denominator, baseline.raw_denominator)
    if denominator is None:
        return RuleValue(numerator, raw.raw_numerator, None)
    if not denominator:
        return raw
    return RuleValue(numerator / denominator, raw.raw_numerator, raw.raw_denominator)


def _increase(now_value: float, before: float | None) -> float:
    if before is None or now_value < before:  # no baseline, or the counter was reset
        return now_value
    return now_value - before


def _due(rule: AlertRule, now: datetime) -> bool:
    if rule.last_evaluated_at is None:
        return True
    half_period = float(settings.ALERTS_EVALUATION_SECONDS) / 2
    return (now - rule.last_evaluated_at).total_seconds() >= half_period


def _breaching_run(rule: AlertRule) -> bool:
    """The last ``datapoints_to_alarm`` evaluations all breached."""
    needed = max(1, rule.datapoints_to_alarm)
    recent = list(
        RuleEvaluation.objects.filter(rule=rule)
        .order_by("-evaluated_at", "-id")
        .values_list("breaching", flat=True)[:needed]
    )
    return len(recent) == needed and all(recent)


def _rule_summary(rule: AlertRule, value: float) -> str:
    op = Comparison(rule.comparison).label
    return (
        f"{rule.metric}{' / ' + rule.denominator if rule.denominator else ''} = {value:.4g} "
        f"{op} {rule.threshold:g} over {rule.window_seconds // 60 or rule.window_seconds} "
        f"{'min' if rule.window_seconds >= 60 else 's'}"
        f"{f' ({rule.datapoints_to_alarm} datapoints)' if rule.datapoints_to_alarm > 1 else ''}."
        f"{' ' + rule.description if rule.description else ''}"
    )


def rule_evaluate(rule: AlertRule, families: list[Metric], *, now: datetime) -> str:
    """Evaluate one rule on collected families: ``"fired"``, ``"resolved"`` or ``""``."""
    result = rule_value(rule, families, now=now)
    breaching = result.value is not None and COMPARE[rule.comparison](result.value, rule.threshold)
    with transaction.atomic():
        RuleEvaluation.objects.create(
            rule=rule,
            evaluated_at=now,
            value=result.value,
            raw_numerator=result.raw_numerator,
            raw_denominator=result.raw_denominator,
            breaching=breaching,
        )
        AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now)
        rule.last_evaluated_at = now
        if breaching and _breaching_run(rule):
            assert result.value is not None
            raised = alert_raise(
                fingerprint=rule.fingerprint,
                title=rule.name,
                summary=_rule_summary(rule, result.value),
                severity=rule.severity,
                rule=rule,
                value=result.value,
                details={"rule": rule.name, "threshold": rule.threshold},
            )
            return "fired" if raised.created else ""
        if not breaching and rule.auto_resolve:
            # read unlocked: alert_resolve locks it, and refuses it when a person (or
            # another run) resolved it since; the evaluation is stored either way
            open_alert = selectors.alert_open_get(fingerprint=rule.fingerprint)
            if open_alert is not None:
                shown = "no data" if result.value is None else f"{result.value:.4g}"
                try:
                    alert_resolve(alert_id=open_alert.pk, note=f"Condition cleared ({shown}).")
                except AlertStateError:  # resolved meanwhile (a person, another run)
                    return ""
                return "resolved"
    return ""


def rule_alerts_retire() -> list[int]:
    """Resolve (as the system) the open alerts of rules that were deleted, or disabled
    (unless ``auto_resolve`` is off: a person resolves those): nothing evaluates such a
    rule any more, so its alert, and the PagerDuty incident it opened, would stay open for
    ever. Returns the alerts' ids; the targets that got the trigger are told."""
    found = list(
        Alert.objects.filter(state__in=OPEN_STATES, fingerprint__startswith=RULE_PREFIX)
        .order_by("id")
        .only("pk", "fingerprint")
    )
    ids = {a.pk: a.fingerprint.removeprefix(RULE_PREFIX) for a in found}
    rules = AlertRule.objects.in_bulk([int(v) for v in ids.values() if v.isdigit()])
    retired: list[int] = []
    for alert_id, rule_id in ids.items():
        if not rule_id.isdigit():  # raised by code with a fingerprint of its own
            continue
        rule = rules.get(int(rule_id))
        if rule is not None and (rule.enabled or not rule.auto_resolve):
            continue
        note = "The rule was deleted." if rule is None else "The rule was disabled."
        try:
            alert_resolve(alert_id=alert_id, note=note)
        except AlertStateError:  # resolved meanwhile (a person)
            continue
        retired.append(alert_id)
    return retired


def alert_rules_evaluate(*, now: datetime | None = None) -> EvaluationReport:
    """Evaluate every enabled rule that is due (see the module docstring)."""
    lease = Lease(LOCK_KEY, max(30, int(settings.ALERTS_EVALUATION_SECONDS) * 2))
    if not lease.take():
        return EvaluationReport(skipped=True)
    try:
        return _evaluate_all(now or timezone.now())
    finally:
        lease.release()


def _rule_names(rule: AlertRule) -> list[str]:
    texts = [rule.metric, rule.denominator] if rule.denominator else [rule.metric]
    return [selectors.selector_parse(text).name for text in texts]


class _RunMetrics:
    """The metric families of one evaluation run, collected per rule window.

    The first window asked reads every source (as ``support.metrics.metrics_collect``
    does, failures included); a further window reads only the sources exporting a name
    that the window's rules read. A rule sums the samples of its own names only
    (``_rule_names``), so its value is the one a full collection gives, and a source's
    names do not depend on the window (its families are yielded on every call, only
    their samples vary). So a source that no rule of another window reads (the outbox,
    the queues, the knowledge base ...) runs once per run, not once per distinct window
    (seven with the seed rules), and a windowed one once per window that reads it. A
    source that failed, or never answered, is read again for every window."""

    def __init__(self, wanted: dict[int, set[str]]) -> None:
        self.wanted = wanted  # window → the sample names its rules read
        self.exported: dict[str, set[str]] = {}  # source → its names, once it answered

    def collect(self, window: int) -> tuple[list[Metric], set[str] | None]:
        """The families for ``window``, and the sample names known when a source failed
        (else None)."""
        families: list[Metric] = []
        known: set[str] = set()
        failed = False
        for name, source in sorted(support_metrics.metric_sources().items()):
            exported = self.exported.get(name)
            if exported is not None and not exported & self.wanted[window]:
                known |= exported  # read by no rule of this window
                continue
            try:
                with support_metrics.metrics_window(window):
                    produced = list(source())
            except (DatabaseError, redis.RedisError) as exc:
                logger.warning("Metrics source %s failed: %s", name, type(exc).__name__)
                failed = True
                continue
            self.exported[name] = selectors.metric_names_known(produced)
            known |= self.exported[name]
            families.extend(produced)
        return families, known if failed else None


def _evaluate_all(now: datetime) -> EvaluationReport:
    report = EvaluationReport()
    rules = [r for r in selectors.rule_list_enabled() if _due(r, now)]
    wanted: dict[int, set[str]] = {}
    for rule in rules:
        try:
            names = _rule_names(rule)
        except selectors.SelectorError:
            names = []  # reported when the rule is evaluated
        wanted.setdefault(rule.window_seconds, set()).update(names)
    run_metrics = _RunMetrics(wanted)
    by_window: dict[int, list[Metric]] = {}
    # Per window: the sample names collected, when a source failed (else None). A rule
    # reading a name that is missing then is not evaluated: its source being down is no
    # reading, and "no data" would resolve its alert, to fire again when the source is
    # back (two notifications per outage of the database or Redis).
    missing_check: dict[int, set[str] | None] = {}
    for rule in rules:
        window = rule.window_seconds
        if window not in by_window:
            by_window[window], missing_check[window] = run_metrics.collect(window)
        try:
            known = missing_check[window]
            if known is not None and any(name not in known for name in _rule_names(rule)):
                logger.warning(
                    "Alarm rule %s (%s) not evaluated: a metric source it reads failed",
                    rule.pk,
                    rule.name,
                )
                report.unavailable.append(rule.pk)
                continue
            outcome = rule_evaluate(rule, by_window[window], now=now)
        except selectors.SelectorError as exc:
            logger.warning("Alarm rule %s (%s) cannot be evaluated: %s", rule.pk, rule.name, exc)
            continue
        except DATABASE_GONE:
            raise  # the database is away: every rule would fail; the next beat runs again
        except SoftTimeLimitExceeded:
            raise  # the task's time is up (this rule's transaction rolled back)
        except Exception:
            # One rule's failure (its transaction rolled back: no datapoint) does not stop
            # the others, nor the retirement, SLA resolution and catch-up below. Logged
            # with its traceback and listed in the report: a bug is not hidden.
            logger.exception("Alarm rule %s (%s) evaluation failed", rule.pk, rule.name)
            report.failed.append(rule.pk)
            continue
        report.evaluated += 1
        if outcome == "fired":
            report.fired.append(rule.pk)
        elif outcome == "resolved":
            report.resolved.append(rule.pk)
    report.retired = rule_alerts_retire()
    report.sla_resolved = sla_alerts_resolve(now=now)
    cutoff = now - timedelta(days=int(settings.ALERTS_EVALUATIONS_RETENTION_DAYS))
    old = RuleEvaluation.objects.filter(evaluated_at__lt=cutoff).values_list("pk", flat=True)
    RuleEvaluation.objects.filter(pk__in=list(old[:5000])).delete()
    report.sla_raised = sla_alerts_catch_up(now=now)
    return report


# --- SLA events (contract16: obs/sla records them) ---------------------------------------

SLA_SEVERITY = {"sla.warning": Severity.WARNING, "sla.breached": Severity.CRITICAL}
SLA_PREFIX = selectors.SLA_PREFIX


def _readable_time(value: Any) -> str:
    """An event's ISO 8601 time as people read it (``support.text.readable_time``, as the
    workbench's SLA badge writes it); what does not parse, as it came."""
    try:
        when = parse_datetime(str(value)) if value else None
    except ValueError:  # shaped like a time but not one ("2026-13-45T25:00")
        when = None
    if when is None:
        return str(value) if value else "?"
    if timezone.is_naive(when):
        when = timezone.make_aware(when, UTC)
    return readable_time(when)


def sla_event_handle(
    *, event_id: int, event_type: str, payload: dict[str, Any], caught_up: bool = False
) -> Raised | None:
    """One alert per (ticket, target) for ``sla.warning`` / ``sla.breached``: a warning
    fires it, a breach fires or escalates it to critical. The same outbox event delivered
    again changes nothing (the alert keeps the ids of the events it has seen). Called by
    ``alerts.tasks.sla_event_handle_task``, after the outbox relay's batch has committed,
    and (``caught_up``, said in the history note) by :func:`sla_alerts_catch_up` for an
    event whose task raised nothing."""
    severity = SLA_SEVERITY.get(event_type)
    ticket_id = payload.get("ticket_id")
    target = str(payload.get("target") or "")
    if severity is None or ticket_id is None or not target:
        logger.warning("SLA event %s (%s) without ticket or target: ignored", event_id, event_type)
        return None
    if payload.get("stopped_at"):
        # Recorded when the clock stopped late (tickets.services.sla.sla_stopped_late): the
        # ticket was already answered or resolved, nobody is left to page.
        logger.debug("SLA event %s: the clock had already stopped; no alert", event_id)
        return None
    fingerprint = f"{SLA_PREFIX}{int(ticket_id)}:{target}"
    ref = str(payload.get("ticket_ref") or ticket_id)
    what = target.replace("_", " ")
    breached = event_type == "sla.breached"
    title = f"SLA {'breached' if breached else 'at risk'}: {what} on ticket {ref}"
    lines = [
        f"The {what} target of ticket {ref} ({payload.get('policy') or 'SLA policy'}, "
        f"priority {payload.get('priority') or '-'}) "
        f"{'was due' if breached else 'is due'} at {_readable_time(payload.get('due_at'))}.",
    ]
    escalation = [str(step) for step in payload.get("escalation") or []]
    if escalation:
        lines.append("Escalation: " + "; ".join(escalation) + ".")
    lines.append(f"Ticket: {settings.SITE_URL}{reverse('ticket', args=[ref])}")
    with transaction.atomic():
        # The open alert locked first, then the events it has seen read: a copy of this
        # event handled at the same moment (the task is acks_late) waits here and then
        # finds it done. (With no open alert, the one-open-per-fingerprint constraint
        # makes the second copy take the first one's alert without notifying.)
        list(
            Alert.objects.select_for_update()
            .filter(fingerprint=fingerprint, state__in=OPEN_STATES)
            .values_list("pk", flat=True)
        )
        seen = Alert.objects.filter(fingerprint=fingerprint, details__events__contains=[event_id])
        if seen.exists():
            return None
        raised = alert_raise(
            fingerprint=fingerprint,
            title=title,
            summary="\n".join(lines),
            severity=severity,
            details={
                "ticket_id": int(ticket_id),
                "ticket_ref": ref,
                "target": target,
                "due_at": payload.get("due_at"),
                "team_id": payload.get("team_id"),
            },
            subject_type="ticket",
            subject_id=int(ticket_id),
            note=f"{event_type} (outbox event {event_id}"
            + ("; raised by the rule evaluation)" if caught_up else ")"),
        )
        alert = raised.alert
        events = [e for e in alert.details.get("events", []) if e != event_id]
        alert.details = {**alert.details, "events": [*events, event_id]}
        alert.save(update_fields=["details", "updated_at"])
    return raised


def _sla_cleared(alert: Alert, ticket: Ticket | None, now: datetime) -> str:
    """Why the clock an SLA alert was raised for has stopped ("" while it still runs): the
    first response was given, the ticket was resolved, closed or merged, or (a warning
    only) its due time moved out of the warning window (a priority or policy change).
    A breach stays open until the first response or the resolution: its time has passed.
    A resolution clock paused while the ticket waits on the customer (pending) has not
    stopped: it restarts when the customer answers."""
    if ticket is None:
        return "the ticket no longer exists"
    if ticket.merged_into_id is not None:
        return f"ticket {ticket.number} was merged into another ticket"
    if ticket.status not in SLA_FIRST_RESPONSE_STATUSES:
        return f"ticket {ticket.number} is {ticket.get_status_display().lower()}"
    # (selectors.sla_outbox_ids_unalerted reads the same conditions in SQL: keep them alike)
    target = str(alert.details.get("target") or alert.fingerprint.rsplit(":", 1)[-1])
    if target == SlaTarget.FIRST_RESPONSE:
        if ticket.first_response_at is not None:
            return f"first response given {readable_time(ticket.first_response_at)}"
        due = ticket.first_response_due_at
    else:
        due = ticket.resolution_due_at
    if alert.severity == Severity.WARNING and due is not None and due > now + sla_warning_window():
        return f"now due {readable_time(due)}, outside the warning window"
    return ""


def sla_alerts_resolve(
    *, ticket_ids: list[int] | None = None, now: datetime | None = None
) -> list[int]:
    """Resolve (as the system) the open SLA alerts whose clock has stopped
    (:func:`_sla_cleared`), of ``ticket_ids`` or of every ticket; returns the alerts'
    ids. Called for ticket and message events (``AlertsConfig``) and by every rule
    evaluation, which also catches due times moved by a policy edit (no event)."""
    now = now or timezone.now()
    found = list(selectors.sla_alert_list_open(ticket_ids=ticket_ids).order_by("id"))
    if not found:
        return []
    tickets = Ticket.objects.in_bulk([int(a.details.get("ticket_id") or 0) for a in found])
    resolved: list[int] = []
    for alert in found:
        reason = _sla_cleared(alert, tickets.get(int(alert.details.get("ticket_id") or 0)), now)
        if not reason:
            continue
        try:
            alert_resolve(alert_id=alert.pk, note=f"Condition cleared: {reason}.")
        except AlertStateError:  # resolved meanwhile (a person, another run)
            continue
        resolved.append(alert.pk)
    return resolved


#: The rule evaluation's catch-up (:func:`sla_alerts_catch_up`): SLA events recorded this
#: long ago at most, this many a run (oldest first; the rest at the next runs).
SLA_CATCH_UP_LOOKBACK = timedelta(days=1)
SLA_CATCH_UP_BATCH = 100


def sla_alerts_catch_up(*, now: datetime | None = None) -> list[int]:
    """Raise the alert of every recent SLA warning or breach that has none while its clock
    still runs (``selectors.sla_outbox_ids_unalerted``: the last ``SLA_CATCH_UP_LOOKBACK``, at
    most ``SLA_CATCH_UP_BATCH``): its ``sla_event_handle_task`` gave up (3 retries are
    shorter than a database failover) or has not run yet. Called by every rule evaluation
    (once a minute). Idempotent as the task is: the event's outbox id is the one the task
    would have handled, so the alert keeps it, and a task delivered late (or a second
    evaluation) finds the work done. Returns the ids of the alerts raised or escalated."""
    now = now or timezone.now()
    found = selectors.sla_outbox_ids_unalerted(
        since=now - SLA_CATCH_UP_LOOKBACK,
        now=now,
        warning_window=sla_warning_window(),
        limit=SLA_CATCH_UP_BATCH,
    )
    if not found:
        return []
    outbox = OutboxEvent.objects.in_bulk(found)
    raised_ids: list[int] = []
    for outbox_id in found:
        event = outbox.get(outbox_id)
        if event is None:  # purged meanwhile (OUTBOX_RETENTION_DAYS is far longer)
            continue
        raised = sla_event_handle(
            event_id=event.pk,
            event_type=event.event_type,
            payload=dict(event.payload),
            caught_up=True,
        )
        if raised is None or not (raised.created or raised.escalated):
            continue
        logger.warning(
            "SLA alert %s raised by the rule evaluation for outbox event %s (%s, ticket %s): "
            "its task had not (it failed, or has not run yet)",
            raised.alert.pk,
            event.pk,
            event.event_type,
            event.aggregate_id,
        )
        raised_ids.append(raised.alert.pk)
    return raised_ids


# --- the delivery kinds ------------------------------------------------------------------


def notification_send(delivery: Delivery) -> SendResult:
    """The delivery engine's ``send`` for every ``alert_*`` kind (no transaction open).

    A deactivated target gets only resolves (of alerts whose trigger it was sent or
    queued: only those are queued for it), so nothing it was told stays open; the attempt
    says so (``"target_inactive": true`` in its request summary). A deleted target gets
    nothing (its address or key went with it)."""
    target = AlertTarget.objects.filter(pk=delivery.payload.get("target_id")).first()
    if target is None:
        raise DeliveryError(
            "The alert target was deleted.",
            outcome=Outcome.PERMANENT,
            error_code="target_deleted",
        )
    message = AlertMessage.from_payload(dict(delivery.payload.get("message") or {}))
    if not target.is_active and message.action != "resolve":
        raise DeliveryError(
            "The alert target was deactivated (it still gets the resolve of what it was sent).",
            outcome=Outcome.PERMANENT,
            error_code="target_inactive",
        )
    if DELIVERY_KINDS.get(target.kind) != delivery.target_kind:
        raise DeliveryError(
            "The target's kind changed since the notification was queued.",
            outcome=Outcome.PERMANENT,
            error_code="kind_changed",
        )
    if message.action == "trigger" and _alert_resolved(message.alert_id):
        # A trigger retried or re-driven after the alert resolved (its resolve may already
        # have gone out): sent now it would open a PagerDuty incident, or a "FIRING" mail,
        # that nothing resolves any more. The resolve tells the target what happened.
        return SendResult(
            request_summary={"target": target.pk, "event_action": "trigger", "sent": False},
            response_summary="Not sent: the alert was resolved before this trigger went out.",
        )
    result = ADAPTERS[target.kind](target, message)
    if not target.is_active:
        summary = {**result.request_summary, "target_inactive": True}
        return replace(result, request_summary=summary)
    return result


def _alert_resolved(alert_id: int) -> bool:
    return Alert.objects.filter(pk=alert_id, state=AlertState.RESOLVED).exists()


def target_kinds() -> list[DeliveryKind]:
    """Registered in ``AlertsConfig.ready()``: one delivery kind per target kind."""
    labels = dict(TargetKind.choices)
    return [
        DeliveryKind(
            name=name,
            label=f"Alert notification ({labels[kind]})",
            send=notification_send,
            schedule=lambda: Schedule(
                max_attempts=int(settings.ALERTS_NOTIFY_MAX_ATTEMPTS), base=5.0, cap=600.0
            ),
            # PagerDuty drops a repeated event of the same dedup_key and action.
            deduplicates=(lambda d: True) if kind == TargetKind.PAGERDUTY else (lambda d: False),
        )
        for kind, name in DELIVERY_KINDS.items()
    ]


# --- configuration ----------------------------------------------------------------------


def alert_target_save(*, target: AlertTarget, actor: Any, changed: list[str]) -> AlertTarget:
    """Save a target a supervisor configured, audited (the secret never logged)."""
    created = target.pk is None
    target.save()
    audit_log_record(
        actor=actor,
        action="alerts.target_created" if created else "alerts.target_changed",
        object_type="alert_target",
        object_id=target.pk,
        details={
            "name": target.name,
            "kind": target.kind,
            "severities": list(target.severities),
            "is_active": target.is_active,
            "changed": sorted(changed),
        },
    )
    return target


def alert_rule_save(*, rule: AlertRule, actor: Any, changed: list[str]) -> AlertRule:
    created = rule.pk is None
    rule.save()
    audit_log_record(
        actor=actor,
        action="alerts.rule_created" if created else "alerts.rule_changed",
        object_type="alert_rule",
        object_id=rule.pk,
        details={"name": rule.name, "changed": sorted(changed)},
    )
    return rule
