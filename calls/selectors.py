"""Reads for the API and the workbench."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from calls.models import (
    AgentStateSpan,
    Alert,
    AlertKind,
    AlertRule,
    Call,
    CallAnalytics,
    Escalation,
    PipelineStatus,
    QueueTeam,
    contact_hash,
)
from support.auth.roles import is_supervisor
from support.errors import InvalidInput, NotFound
from support.parsing import normalise_phone
from tickets.context.privacy import customer_redaction_names
from tickets.models import Customer, Team, Ticket, format_ticket_number
from tickets.selectors import (
    customer_visible_expression,
    ticket_visibility_q,
    user_team_ids,
    visible_ticket_ids,
)


def call_visibility_q(user: Any, *, prefix: str = "") -> Q:
    """Which calls a user may see: supervisors all; agents the calls whose queue maps to
    one of their teams (:class:`~calls.models.QueueTeam`), and the calls one of whose
    escalation tickets they may see (the ticket links to the call page, where whoever
    follows an IVR failure up reads the journey). Other calls of unmapped queues, or with
    no queue, are for supervisors only. ``prefix`` is the path to the call from the
    queried model (``"call__"`` for analytics)."""
    if is_supervisor(user):
        return Q()
    queues = QueueTeam.objects.filter(team_id__in=user_team_ids(user)).values("queue_name")
    escalated = Escalation.objects.filter(
        ticket__in=Ticket.objects.filter(ticket_visibility_q(user)).values("pk")
    ).values("call_id")
    return Q(**{f"{prefix}queue_name__in": queues}) | Q(**{f"{prefix}pk__in": escalated})


#: The customer context's scope kind for an analysed call's entry, ``call:<contact id>``
#: (``tickets.context.scopes``; rule: :func:`call_scope_visible`).
CALL_SCOPE = "call"


def call_scope_rows(user: Any) -> QuerySet[Call, Any]:
    """The contact ids of the calls ``user`` may see (the call page's rule,
    :func:`call_visibility_q`), as a subquery: the call entries' rule as a filter
    (``tickets.context.scopes.scope_visibility_q``: the admin's interactions page)."""
    return Call.objects.filter(call_visibility_q(user)).order_by().values("contact_id")


def call_scope_visible(user: Any, contact_ids: set[str]) -> set[str]:
    """The contact ids among ``contact_ids`` of the calls ``user`` may see (the call page's
    rule, :func:`call_scope_rows`), for the customer context's call entries. One query
    for an agent; a supervisor's are never asked (they see every entry)."""
    if not contact_ids:
        return set()
    return set(
        call_scope_rows(user)
        .filter(contact_id__in=sorted(contact_ids))
        .values_list("contact_id", flat=True)
    )


_HASH = re.compile(r"[0-9a-f]{32}")


def call_hash_parse(text: str) -> str | None:
    """A call's key as it arrives in a path: the MD5 hex digest of its contact id (any
    case), lower-cased; None for anything else (which no call has, and a NUL in it would
    reach PostgreSQL)."""
    value = text.lower()
    return value if _HASH.fullmatch(value) else None


def queue_team(queue_name: str) -> Team | None:
    """The team whose agents see the calls of this queue when exactly one does; None for
    no queue, an unmapped queue or one shared by several teams."""
    if not queue_name:
        return None
    rows = list(QueueTeam.objects.filter(queue_name=queue_name).select_related("team")[:2])
    return rows[0].team if len(rows) == 1 else None


def _epoch(analytics: CallAnalytics) -> int:
    moment = analytics.call.initiated_at or analytics.created_at
    return int(moment.timestamp())


def analytics_item(analytics: CallAnalytics) -> dict[str, Any]:
    """Seed 003's item fields (plus sentiment, moderation and the path that produced it)."""
    call = analytics.call
    return {
        "hash": call.hash,
        "epchdatetimestamp": _epoch(analytics),
        "call_id": call.contact_id,
        "s3_input_uri": call.s3_input_uri or call.recording_location,
        "s3_output_uri": call.s3_output_uri,
        "bedrock_status": analytics.bedrock_status,
        "call_summary": analytics.call_summary,
        "call_categories": analytics.call_categories,
        "categories_by": analytics.categories_by,
        "topics": analytics.topics,
        "transcript": analytics.transcript,
        "audio_summary": analytics.audio_summary,
        "topic_summary": analytics.topic_summary,
        "audio_content_moderation": analytics.content_moderation,
        "sentiment": analytics.sentiment,
        "analytics_path": analytics.produced_by,
        "provider": analytics.provider,
        "fallback_from": analytics.fallback_from,
        "created_at": analytics.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": analytics.updated_at.isoformat().replace("+00:00", "Z"),
    }


def analytics_list(
    *,
    user: Any,
    hash: str | None = None,
    call_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    every_call: bool = False,
) -> list[CallAnalytics]:
    """Analytics of the calls ``user`` may see (:func:`call_visibility_q`), newest first.
    ``every_call``: no visibility rule (seed 003's public analytics API, when an operator
    turns ``SEED_ANALYTICS_PUBLIC`` on)."""
    query = CallAnalytics.objects.select_related("call").order_by("-created_at", "-id")
    if not every_call:
        query = query.filter(call_visibility_q(user, prefix="call__"))
    if call_id is not None:
        hash = contact_hash(call_id)
    if hash is not None:
        query = query.filter(call__hash=hash)
    return list(query[offset : offset + limit])


def _customer_shown(user: Any) -> Any:
    """``customer_shown``: whether ``user`` may see the customer caller ID matched the call
    to (the customers' rule, ``tickets.selectors.customer_visibility_q``). Calls follow
    queues, customers their tickets: a team's agent taking a call whose number matches
    another team's customer sees the number, not that customer's name (security review
    2026-12-07)."""
    return customer_visible_expression(user, "customer_id")


def call_list(*, user: Any, filters: dict[str, str] | None = None) -> QuerySet[Call]:
    """The calls ``user`` may see (:func:`call_visibility_q`), newest first, each with
    ``customer_shown`` (:func:`_customer_shown`). An unknown
    ``status`` is ``InvalidInput`` (a typo listed no call at all)."""
    filters = filters or {}
    if filters.get("status") and filters["status"] not in PipelineStatus.values:
        raise InvalidInput(f"status must be one of: {', '.join(PipelineStatus.values)}.")
    query = (
        Call.objects.select_related("analytics", "ivr_journey", "customer")
        .filter(call_visibility_q(user))
        .annotate(customer_shown=_customer_shown(user))
    )
    if filters.get("status"):
        query = query.filter(pipeline_status=filters["status"])
    if filters.get("q"):
        query = query.filter(contact_id__icontains=filters["q"]) | query.filter(
            customer_phone__icontains=filters["q"]
        )
    return query.order_by("-initiated_at", "-id")


def call_get_visible(*, hash: str, user: Any) -> Call:
    """A call ``user`` may see; NotFound otherwise (the same answer as an unknown hash).
    ``customer_shown`` as in :func:`call_list`."""
    key = call_hash_parse(hash)
    if key is None:
        raise NotFound("No call with this hash.")
    call = (
        Call.objects.select_related("analytics", "ivr_journey", "transcript", "customer")
        .filter(call_visibility_q(user), hash=key)
        .annotate(customer_shown=_customer_shown(user))
        .first()
    )
    if call is None:
        raise NotFound(f"No call with hash {key!r}.")
    return call


def call_escalations(*, call: Call, user: Any) -> list[dict[str, str]]:
    """The call's escalations; each names its ticket only when ``user`` may see it."""
    escalations = list(call.escalations.order_by("-created_at", "-id"))
    visible = visible_ticket_ids(user, [e.ticket_id for e in escalations if e.ticket_id])
    return [
        {
            "kind": e.kind,
            "reason": e.reason,
            "ticket_number": format_ticket_number(e.ticket_id) if e.ticket_id in visible else "",
        }
        for e in escalations
    ]


def state_limits() -> dict[str, int]:
    """Per agent state, the shortest limit of the enabled "state lasts longer than N
    minutes" rules (the board marks an agent past it)."""
    limits: dict[str, int] = {}
    rules = AlertRule.objects.filter(enabled=True, kind=AlertKind.STATE_LONGER_THAN)
    for state, minutes in rules.exclude(state="").values_list("state", "threshold_minutes"):
        limits[state] = min(minutes, limits.get(state, minutes))
    return limits


#: The board lists at most this many open alerts, newest first (the admin has them all).
BOARD_ALERTS = 50


def agent_board(*, now: datetime | None = None) -> dict[str, Any]:
    """The supervisors' board: each agent's open span (how long, and whether it is past
    its state's limit) and the alerts nobody acknowledged yet (whether the state each is
    about has ended since)."""
    now = now or timezone.now()
    limits = state_limits()
    spans = AgentStateSpan.objects.filter(ended_at__isnull=True).order_by("username")
    agents = []
    for s in spans:
        seconds = s.duration_seconds(now)
        limit = limits.get(s.state)
        agents.append(
            {
                "username": s.username or s.agent_arn,
                "state": s.state,
                "since": s.started_at,
                "seconds": seconds,
                "minutes": seconds // 60,
                "limit_minutes": limit,
                # As the rule reads: past the limit, not at it (calls.services.agents).
                "over": limit is not None and seconds > limit * 60,
            }
        )
    alerts = list(
        Alert.objects.select_related("rule", "span")
        .filter(acknowledged_at__isnull=True)
        .order_by("-created_at", "-id")[:BOARD_ALERTS]
    )
    return {
        "agents": agents,
        "alerts": [
            {
                "alert": a,
                "agent": a.span.username or a.span.agent_arn,
                "since": a.span.started_at,
                "ended": a.span.ended_at is not None,
            }
            for a in alerts
        ],
        "state_limits": limits,
    }


# --- callers and links (used by the services' intake, IVR and Salesforce) ---------------


def customer_for_phone(phone: str) -> Customer | None:
    phone = normalise_phone(phone)
    if not any(ch.isdigit() for ch in phone):  # "+anonymous", "+ (withheld)": nobody
        return None
    return Customer.objects.filter(phone=phone).order_by("id").first()


# Contact attributes a contact flow may set to the caller's name (from a Customer Profiles
# lookup, a CRM dip or a "say your name" step), compared in lower case without separators:
# "CustomerName", "customer_first_name", "FirstName", …
NAME_ATTRIBUTE_KEYS = frozenset(
    {
        "customername",
        "customerfirstname",
        "customerlastname",
        "customerfullname",
        "callername",
        "callerfirstname",
        "callerlastname",
        "contactname",
        "fullname",
        "firstname",
        "lastname",
        "givenname",
        "familyname",
        "surname",
    }
)


def call_redaction_names(call: Call) -> tuple[str, ...]:
    """The names a call's transcript and summary may hold, for ``support.redaction``: the
    matched customer's (their name, channel display names) and any name the contact flow
    put in the call's attributes (``NAME_ATTRIBUTE_KEYS``). A caller matched to no
    customer and named by no attribute has none: their name is not guessed."""
    names = list(customer_redaction_names(call.customer_id))
    for key, value in (call.attributes or {}).items():
        if not isinstance(value, str) or not 2 <= len(value.strip()) <= 100:
            continue
        if re.sub(r"[^a-z]", "", str(key).lower()) in NAME_ATTRIBUTE_KEYS:
            names.append(value.strip())
    return tuple(dict.fromkeys(names))


def call_url(call: Call) -> str:
    return f"{settings.SITE_URL}/calls/{call.hash}/"
