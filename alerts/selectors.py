"""Reads: metric selectors over collected samples, alerts for the pages and the dashboard,
the targets an alert goes to."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Concat
from prometheus_client.core import Metric

from alerts.models import OPEN_STATES, Alert, AlertRule, AlertTarget, RuleEvaluation, Severity
from support.metrics import metrics_collect
from support.models import OutboxEvent
from tickets.models import SlaEvent, SlaEventKind, SlaTarget
from tickets.selectors import SLA_FIRST_RESPONSE_STATUSES

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SELECTOR = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?:\{{(?P<matchers>.*)\}})?\s*$", re.DOTALL)
_MATCHER = re.compile(
    r'\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"'
    r"\s*(?:,|$)"
)


class SelectorError(ValueError):
    """A selector that does not parse (the admin form shows the message)."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    """A Prometheus-style instant selector: a sample name and label matchers."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, sample_name: str, labels: dict[str, str]) -> bool:
        return sample_name == self.name and all(m.matches(labels) for m in self.matchers)


def selector_parse(text: str) -> Selector:
    """``name{label="v",other!="w",status=~"5.."}`` → :class:`Selector` (Prometheus
    syntax: ``=``, ``!=``, ``=~``, ``!~``; regular expressions match the whole value)."""
    found = _SELECTOR.match(text or "")
    if found is None:
        raise SelectorError(f'Not a selector: {text!r} (expected name{{label="value"}}).')
    matchers: list[Matcher] = []
    rest = (found.group("matchers") or "").strip()
    position = 0
    while position < len(rest):
        part = _MATCHER.match(rest, position)
        if part is None:
            raise SelectorError(f"Cannot read the label matchers at {rest[position:]!r}.")
        value = part.group("value").replace('\\"', '"').replace("\\\\", "\\")
        if part.group("op") in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise SelectorError(f"Bad regular expression {value!r}: {exc}.") from None
        matchers.append(Matcher(part.group("label"), part.group("op"), value))
        position = part.end()
    return Selector(found.group("name"), tuple(matchers))


def selector_sum(selector: Selector, families: Iterable[Metric]) -> float:
    """The sum of every sample ``selector`` matches (0 when none does: a count with no rows
    is exported as a family without samples)."""
    total = 0.0
    for family in families:
        for sample in family.samples:
            if selector.matches(sample.name, dict(sample.labels)):
                total += float(sample.value)
    return total


#: The sample names a family of each type exports besides its own name (prometheus_client).
_SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}


def metric_names_known(families: Iterable[Metric] | None = None) -> set[str]:
    """Every sample name the metric sources export (``families``, or collected now): a
    family's samples, and the names its type exports even before it has samples (a
    histogram's ``_sum`` and ``_count``, a counter's ``_total``)."""
    if families is None:
        families = metrics_collect()
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def selector_unknown_name_problem(selector: Selector, known: set[str]) -> str:
    """Why ``selector`` would sum nothing for ever (``""`` when its name is exported): a
    name no source exports is a typo or a metric that does not exist."""
    if selector.name in known:
        return ""
    close = difflib.get_close_matches(selector.name, sorted(known), n=3, cutoff=0.8)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see GET /metrics)"
    return f"No metric source exports {selector.name}{hint}."


# --- rules --------------------------------------------------------------------------------


def rule_list_enabled() -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(enabled=True).prefetch_related("targets")


def rule_evaluation_list(*, rule_id: int, limit: int = 20) -> list[RuleEvaluation]:
    """The rule's latest evaluations, newest first (the alert page's recent values)."""
    return list(
        RuleEvaluation.objects.filter(rule_id=rule_id).order_by("-evaluated_at", "-id")[:limit]
    )


# --- alerts -------------------------------------------------------------------------------


def alert_list(*, state: str = "", severity: str = "", limit: int = 200) -> QuerySet[Alert]:
    """Alerts for the list page, newest first; ``state`` ``open`` means firing or
    acknowledged."""
    alerts = Alert.objects.select_related("rule", "acknowledged_by", "resolved_by")
    if state == "open":
        alerts = alerts.filter(state__in=OPEN_STATES)
    elif state:
        alerts = alerts.filter(state=state)
    if severity:
        alerts = alerts.filter(severity=severity)
    return alerts.order_by("-created_at", "-id")[:limit]


def alert_list_firing(*, limit: int = 20) -> list[Alert]:
    """Firing and acknowledged alerts, newest first (the supervisor dashboard's widget)."""
    return list(
        Alert.objects.filter(state__in=OPEN_STATES)
        .select_related("rule", "acknowledged_by")
        .order_by("-created_at", "-id")[:limit]
    )


def alert_get(*, alert_id: int) -> Alert | None:
    return (
        Alert.objects.select_related("rule", "acknowledged_by", "resolved_by")
        .filter(pk=alert_id)
        .first()
    )


def alert_open_get(*, fingerprint: str) -> Alert | None:
    return Alert.objects.filter(fingerprint=fingerprint, state__in=OPEN_STATES).first()


SLA_PREFIX = "sla:"  # an SLA alert's fingerprint: sla:<ticket id>:<target>


def sla_alert_list_open(*, ticket_ids: Iterable[int] | None = None) -> QuerySet[Alert]:
    """The open SLA alerts, of ``ticket_ids`` or of every ticket."""
    alerts = Alert.objects.filter(state__in=OPEN_STATES, fingerprint__startswith=SLA_PREFIX)
    if ticket_ids is None:
        return alerts
    return alerts.filter(
        fingerprint__in=[
            f"{SLA_PREFIX}{int(pk)}:{target}" for pk in ticket_ids for target in SlaTarget
        ]
    )


def sla_outbox_ids_unalerted(
    *, since: datetime, now: datetime, warning_window: timedelta, limit: int
) -> list[int]:
    """The outbox events (``sla.<kind>``, whose ids an alert keeps) of the SLA warnings and
    breaches recorded since ``since`` that should have an alert and have none, at most
    ``limit``, oldest first: the rule evaluation raises them
    (``alerts.services.sla_alerts_catch_up``) when their task failed.

    Only events that were published (the demo's history rows were not, on purpose), not
    recorded when the clock had already stopped (``stopped_at``: nothing to page), whose
    clock still runs as ``services._sla_cleared`` reads it (not merged; new, open or
    pending; a first response not given yet) and, for a warning, still due inside the
    warning window. One (ticket, target, kind) has at most one event, so "has an alert"
    is exact by fingerprint: a warning is alerted by any alert of its fingerprint, a
    breach by a critical one (only a breach makes an SLA alert critical)."""
    ticket_id = Cast(OuterRef("ticket_id"), output_field=CharField())
    fingerprint = Concat(Value(SLA_PREFIX), ticket_id, Value(":"), OuterRef("target"))
    alerts = Alert.objects.filter(fingerprint=fingerprint)
    published = (
        OutboxEvent.objects.filter(
            aggregate_type="ticket",
            aggregate_id=ticket_id,
            event_type=Concat(Value("sla."), OuterRef("kind")),
        )
        .annotate(sla_target=KeyTextTransform("target", "payload"))
        .filter(sla_target=OuterRef("target"))
        .order_by("pk")
        .values("pk")[:1]
    )
    latest = now + warning_window
    found = (
        SlaEvent.objects.filter(
            created_at__gte=since,
            stopped_at__isnull=True,
            ticket__merged_into__isnull=True,
            ticket__status__in=SLA_FIRST_RESPONSE_STATUSES,
        )
        .exclude(target=SlaTarget.FIRST_RESPONSE, ticket__first_response_at__isnull=False)
        .exclude(
            Q(kind=SlaEventKind.WARNING)
            & (
                Q(target=SlaTarget.FIRST_RESPONSE, ticket__first_response_due_at__gt=latest)
                | Q(target=SlaTarget.RESOLUTION, ticket__resolution_due_at__gt=latest)
            )
        )
        .annotate(
            outbox_id=Subquery(published),
            alerted=Exists(alerts),
            alerted_critical=Exists(alerts.filter(severity=Severity.CRITICAL)),
        )
        .filter(outbox_id__isnull=False)
        .exclude(kind=SlaEventKind.WARNING, alerted=True)
        .exclude(kind=SlaEventKind.BREACHED, alerted_critical=True)
        .order_by("created_at", "pk")
        .values_list("outbox_id", flat=True)
    )
    return [int(pk) for pk in found[:limit]]


def alert_counts() -> list[dict[str, object]]:
    """Alerts by state and severity (the ``support_alerts`` metric)."""
    return list(Alert.objects.values("state", "severity").annotate(n=Count("pk")).order_by())


# --- targets ------------------------------------------------------------------------------


def target_list_for(*, severity: str, rule: AlertRule | None = None) -> list[AlertTarget]:
    """The active targets an alert of ``severity`` goes to: the rule's own targets when it
    names some, else every active target whose tiers include ``severity``."""
    if rule is not None:
        named = [t for t in rule.targets.all() if t.is_active]
        if named:
            return named
    return list(
        AlertTarget.objects.filter(is_active=True)
        .filter(Q(severities__contains=[severity]))
        .order_by("pk")
    )


def target_list_by_ids(ids: Iterable[int], *, include_inactive: bool = False) -> list[AlertTarget]:
    """The targets of ``ids`` that still exist: the active ones, or with
    ``include_inactive`` the deactivated ones too."""
    targets = AlertTarget.objects.filter(pk__in=list(ids))
    if not include_inactive:
        targets = targets.filter(is_active=True)
    return list(targets.order_by("pk"))


def alert_list_open_sent_to(target_ids: Iterable[int]) -> list[Alert]:
    """The open alerts (firing or acknowledged) whose trigger went, or is queued, to one of
    these targets: each is owed a resolve that a deleted target would never get."""
    ids = [int(pk) for pk in target_ids]
    if not ids:
        return []
    return list(
        Alert.objects.filter(state__in=OPEN_STATES, notified_target_ids__overlap=ids).order_by("pk")
    )
