"""Reads: the customer context (profile, identities, orders, interactions, sentiment trend,
CSAT, churn risk), cached per customer.

The context is built as JSON-ready primitives so that a cache hit is returned as is.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import fmean
from typing import Any

from django.db.models import Case, Count, F, IntegerField, Max, Q, Sum, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.errors import NotFound
from support.parsing import parse_id
from tickets.context.cache import context_cache_get, context_cache_set
from tickets.context.churn import ChurnSignals, churn_risk, score_delta
from tickets.context.interactions import (
    LEGACY_CALL_KEY_PREFIX,
    InteractionRecord,
    PostgresInteractionBackend,
    ScorePoint,
    get_backend,
    record_from_row,
)
from tickets.context.models import (
    FAILED_ORDER_STATUSES,
    REFUND_ORDER_STATUSES,
    ContextDeadLetter,
    CsatFeedback,
    CustomerErasure,
    Interaction,
    InteractionKind,
    Order,
)
from tickets.context.scopes import scope_visibility_q, scopes_visible
from tickets.models import ChannelIdentity, Customer, Message, Ticket, TicketStatus
from tickets.selectors import ticket_visibility_q

RECENT_ORDERS = 10
RECENT_INTERACTIONS = 10
RECENT_TICKETS = 5
TREND_WEEKS = 12
WINDOW_DAYS = 90
SENTIMENT_SAMPLE = 5
CONTACT_KINDS = frozenset({InteractionKind.MESSAGE, InteractionKind.CALL})
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
#: The cached build's part that is never returned: what :func:`customer_context_for`
#: needs to give an agent the figures over the tickets (and scopes) it may see, entry by
#: entry.
VIEWER_KEY = "_viewer"
#: Churn reasons whose text and points count the customer's tickets or contacts, or date
#: the last contact: shown to agents as one line (:data:`TICKET_HISTORY_TEXT`), their
#: points summed, since they count tickets the agent may not see. The score itself is a
#: whole-customer figure (it already holds these points: the line says no more than it).
TICKET_HISTORY_REASONS = frozenset(
    {
        "open_tickets",
        "reopened_tickets",
        "low_csat",
        "frequent_contacts",
        "recent_unhappy_contact",
    }
)
TICKET_HISTORY_CODE = "ticket_history"
TICKET_HISTORY_TEXT = (
    "Tickets and contacts (open or reopened tickets, low ratings, frequent or recent "
    "unhappy contact)."
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)):.2f}"


def customer_get(customer_id: int | str) -> Customer:
    pk = parse_id(customer_id)
    if pk is None:
        raise NotFound(f"No customer {customer_id!r}.")
    customer = Customer.objects.filter(pk=pk).first()
    if customer is None:
        raise NotFound(f"No customer {customer_id!r}.")
    return customer


def _stamp(customer: Customer) -> str:
    return customer.updated_at.isoformat()


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """The context without its private part (:data:`VIEWER_KEY`); a new dict, so the
    cached one (the in-process cache's, shared by requests) is never changed."""
    return {k: v for k, v in data.items() if k != VIEWER_KEY}


def _context_full(customer: Customer, *, use_cache: bool = True) -> dict[str, Any]:
    """The built context with its private part, from the cache when fresh."""
    stamp = _stamp(customer)
    if use_cache:
        cached = context_cache_get(customer.pk, stamp=stamp)
        if cached is not None:
            return cached
    data = _context_build_full(customer)
    if use_cache:
        context_cache_set(customer.pk, stamp=stamp, data=data)
    return data


def customer_context_get(customer: Customer, *, use_cache: bool = True) -> dict[str, Any]:
    """The customer's whole context (a supervisor's view), from the cache when fresh (see
    ``tickets.context.cache``). What an agent may see is :func:`customer_context_for`."""
    return _public(_context_full(customer, use_cache=use_cache))


def customer_context_for(customer: Customer, *, user: Any) -> dict[str, Any]:
    """The context as ``user`` may see it. The caller has checked that the customer is
    visible (``tickets.selectors.customer_get_visible`` or a visible ticket of theirs).

    A supervisor sees it whole. For an agent, everything that counts, lists or dates the
    customer's tickets is over the tickets the agent may see (the ticket rule), so nothing
    says that another team's ticket exists: the ticket counts and recent tickets, the
    recent interactions, the CSAT average, count and last answer, the sentiment strip's
    weeks, its message count and last score. The customer's mood and risk stay
    whole-customer scores (sentiment means and direction, the churn score and level:
    properties of the customer), but the churn reasons that count tickets or contacts
    become one line with their points summed (:data:`TICKET_HISTORY_REASONS`). Orders and
    the profile are the customer's, not a ticket's.

    The interactions and the scored contacts are those of tickets the agent may see (or
    of no ticket) **and**, for an entry with a scope (an analysed call:
    ``call:<contact id>``), whose scope the agent may see under its app's rule
    (``tickets.context.scopes``: the call page's); an entry of no ticket and no scope (a
    CRM's) is shown to whoever may see the customer. The recent interactions are the most
    recent the agent may see: the whole customer's, when the agent may see them all or
    there are no more; else read again, filtered before the limit
    (:func:`_interactions_recent_visible`). One query for an agent (the visible tickets
    among those the context names, with the counts), one more per scope kind the context
    names (its calls, whatever their number), and one for the recent interactions when
    they are read again; none for a supervisor.
    """
    full = _context_full(customer)
    data = _public(full)
    if is_supervisor(user):
        return data
    viewer = full.get(VIEWER_KEY) or {}
    scored = [tuple(p) for p in viewer.get("scored", [])]
    answers = [tuple(a) for a in viewer.get("csat", [])]
    recent = data["interactions"]["recent"]
    named = {i["ticket_id"] for i in recent}
    named |= {p[0] for p in scored} | {a[0] for a in answers}
    tickets, visible = _tickets_visible(customer, user=user, named=named)
    scopes = scopes_visible(user, {i["scope"] for i in recent} | {p[3] for p in scored})

    def shown(ticket_id: int | None, scope: str) -> bool:
        return (ticket_id is None or ticket_id in visible) and (not scope or scope in scopes)

    recent_shown = [i for i in recent if shown(i["ticket_id"], i["scope"])]
    if len(recent) >= RECENT_INTERACTIONS and len(recent_shown) < len(recent):
        # the whole customer's most recent, some hidden, and older entries may be ones
        # the agent may see: its own most recent, filtered before the limit
        recent_shown = _interactions_recent_visible(customer, user=user)

    now = datetime.fromisoformat(data["generated_at"])
    seen = [
        (datetime.fromisoformat(at), score)
        for ticket_id, at, score, scope in scored
        if shown(ticket_id, scope)
    ]
    return {
        **data,
        "tickets": tickets,
        "interactions": {
            **data["interactions"],
            "recent": recent_shown,
        },
        "sentiment": {**data["sentiment"], **_sentiment_shown(seen, now=now)},
        "csat": _csat_figures([a for a in answers if a[0] in visible]),
        "churn": _churn_for_agents(data["churn"]),
    }


def _interactions_recent_visible(customer: Customer, *, user: Any) -> list[dict[str, Any]]:
    """The customer's :data:`RECENT_INTERACTIONS` most recent interactions that ``user``
    may see (of a ticket of the customer's it may see, or of none; of a scope it may see,
    or of none), filtered before the limit: the whole customer's most recent ones,
    filtered after, left an agent fewer (down to none) while older entries it may see
    existed, and the shortfall hinted at the hidden ones. Not cached (the rule is the
    viewer's): one query with PostgreSQL (the filter is in it); a backend that reads by
    customer only (DynamoDB) is read further (four times as many entries each time) until
    enough are shown or none are left."""
    backend = get_backend()
    if isinstance(backend, PostgresInteractionBackend):
        rows = (
            Interaction.objects.filter(customer_id=customer.pk, expires_at__gt=timezone.now())
            .filter(_interaction_visibility_q(customer, user=user))
            .order_by("-occurred_at", "-id")[:RECENT_INTERACTIONS]
        )
        return [record_from_row(row).as_dict() for row in rows]
    limit = RECENT_INTERACTIONS
    while True:
        items = backend.recent(customer.pk, limit=limit)
        shown = [item.as_dict() for item in interactions_visible(customer, items, viewer=user)]
        if len(shown) >= RECENT_INTERACTIONS or len(items) < limit:
            return shown[:RECENT_INTERACTIONS]
        limit *= 4


def interactions_visible(
    customer: Customer, items: list[InteractionRecord], *, viewer: Any
) -> list[InteractionRecord]:
    """The entries among ``items`` (the customer's) that the customer context shows
    ``viewer``, under its rule (``tickets.context.selectors.customer_context_for``): of
    no ticket or of a ticket of the customer's it may see (``ticket_visibility_q``), and
    of no scope or of a scope it may see (``scopes.scopes_visible``: an analysed call's
    entry follows the call page's rule, calls by queue → team mapping). All of them for a
    supervisor, or with no viewer (an operator's command). One query for the tickets
    named, one per scope kind named."""
    if viewer is None or is_supervisor(viewer):
        return items
    named = {item.ticket_id for item in items if item.ticket_id is not None}
    tickets = (
        set(
            Ticket.objects.filter(customer_id=customer.pk, pk__in=named)
            .filter(ticket_visibility_q(viewer))
            .values_list("pk", flat=True)
        )
        if named
        else set()
    )
    scopes = scopes_visible(viewer, {item.scope for item in items})
    return [
        item
        for item in items
        if (item.ticket_id is None or item.ticket_id in tickets)
        and (not item.scope or item.scope in scopes)
    ]


def _interaction_visibility_q(customer: Customer, *, user: Any) -> Q:
    """:class:`Interaction` rows ``user`` may see, as a filter (an agent's: supervisors see
    the whole context): those of no ticket or of a ticket of ``customer``'s it may see, and
    of no scope or of a scope it may see, an analysed call's written without one scoped by
    its key (``interactions.scope_read``)."""
    tickets = Ticket.objects.filter(customer_id=customer.pk).filter(ticket_visibility_q(user))
    return (Q(ticket__isnull=True) | Q(ticket__in=tickets.values("pk"))) & interaction_scope_q(user)


def interaction_scope_q(user: Any) -> Q:
    """:class:`Interaction` rows whose scope ``user`` may see, as a filter: of no scope or
    of a scope it may see (``scopes.scope_visibility_q``), an analysed call's written
    without one scoped by its key (``interactions.scope_read``). The ticket and customer
    rules are the caller's (the context's and the admin's)."""
    legacy_call = Q(
        scope="", kind=InteractionKind.CALL, source_key__startswith=LEGACY_CALL_KEY_PREFIX
    )
    return (~legacy_call & scope_visibility_q(user)) | (
        legacy_call & scope_visibility_q(user, field="source_key")
    )


def _tickets_visible(
    customer: Customer, *, user: Any, named: set[int | None]
) -> tuple[dict[str, Any], set[int]]:
    """The ``tickets`` figures over the customer's tickets ``user`` may see (total, open,
    the most recent), and which of the tickets ``named`` (by the context's interactions
    and answers) the user may see. One query, whatever the number of tickets: the counts
    are window functions over the visible tickets, and only the recent ones and those
    named come back."""
    wanted = sorted(pk for pk in named if pk is not None)
    rows = list(
        Ticket.objects.filter(customer_id=customer.pk)
        .filter(ticket_visibility_q(user))
        .annotate(
            position=Window(RowNumber(), order_by=[F("created_at").desc(), F("id").desc()]),
            total=Window(Count("id")),
            open_count=Window(
                Sum(
                    Case(
                        When(status__in=OPEN_STATUSES, then=Value(1)),
                        default=Value(0),
                        output_field=IntegerField(),
                    )
                )
            ),
        )
        # filtered after the window functions (Django puts them in a subquery)
        .filter(Q(position__lte=RECENT_TICKETS) | Q(pk__in=wanted))
        .order_by("-created_at", "-id")
        .values(
            "id", "subject", "status", "channel", "created_at", "position", "total", "open_count"
        )
    )
    recent = [
        {
            "id": row["id"],
            "number": Ticket(pk=row["id"]).number,
            "subject": row["subject"],
            "status": row["status"],
            "channel": row["channel"],
            "created_at": _iso(row["created_at"]),
        }
        for row in rows
        if row["position"] <= RECENT_TICKETS
    ]
    figures = {
        "total": rows[0]["total"] if rows else 0,
        "open": rows[0]["open_count"] if rows else 0,
        "recent": recent,
    }
    return figures, {row["id"] for row in rows}


def _churn_for_agents(churn: dict[str, Any]) -> dict[str, Any]:
    """The churn risk with the reasons that count tickets or contacts as one line."""
    reasons = [r for r in churn["reasons"] if r["code"] not in TICKET_HISTORY_REASONS]
    points = sum(r["points"] for r in churn["reasons"] if r["code"] in TICKET_HISTORY_REASONS)
    if points:
        reasons.append({"code": TICKET_HISTORY_CODE, "points": points, "text": TICKET_HISTORY_TEXT})
        reasons.sort(key=lambda r: -r["points"])
    return {**churn, "reasons": reasons}


def customer_context_build(customer: Customer, *, now: datetime | None = None) -> dict[str, Any]:
    """The customer's whole context, built afresh (what a supervisor sees)."""
    return _public(_context_build_full(customer, now=now))


def _context_build_full(customer: Customer, *, now: datetime | None = None) -> dict[str, Any]:
    """The context, and under :data:`VIEWER_KEY` what an agent's figures are drawn from:
    the scored contacts of the window (ticket, time, score, scope), oldest first, and the
    CSAT answers (ticket, rating, time), newest first."""
    now = now or timezone.now()
    window_start = now - timedelta(days=WINDOW_DAYS)
    erased = CustomerErasure.objects.filter(customer=customer).exists()
    identities = [
        {"channel": channel, "external_id": external_id, "display_name": display_name}
        for channel, external_id, display_name in ChannelIdentity.objects.filter(customer=customer)
        .order_by("channel", "id")
        .values_list("channel", "external_id", "display_name")
    ]
    orders = _orders(customer, window_start=window_start, now=now)
    tickets = _tickets(customer)
    backend = get_backend()
    recent = backend.recent(customer.pk, limit=RECENT_INTERACTIONS)
    points = backend.window(customer.pk, since=window_start)
    sentiment = _sentiment(points, now=now)
    answers = _csat_answers(customer)
    csat = _csat_figures(answers)

    contact_days = {
        timezone.localdate(p.occurred_at)
        for p in points
        if p.kind in CONTACT_KINDS and p.occurred_at >= now - timedelta(days=30)
    }
    # The last contact's own score: an unscored contact (a call without transcript, a
    # message with only an attachment) is not judged by an older message's sentiment.
    last_contact = max(
        (p for p in points if p.kind in CONTACT_KINDS), key=lambda p: p.occurred_at, default=None
    )
    last_order_at = orders.pop("_last_placed_at")
    signals = ChurnSignals(
        recent_sentiment=sentiment["recent_average"],
        previous_sentiment=sentiment["previous_average"],
        last_sentiment=last_contact.score if last_contact else None,
        contacts_30d=len(contact_days),
        days_since_last_contact=(now - last_contact.occurred_at).days if last_contact else None,
        open_tickets=tickets["open"],
        reopened_90d=sum(1 for p in points if p.kind == InteractionKind.TICKET_REOPENED),
        failed_orders_90d=orders.pop("_failed_90d"),
        refunds_90d=orders.pop("_refunds_90d"),
        low_csat_90d=sum(
            1
            for _, rating, at in answers
            if rating <= 2 and datetime.fromisoformat(at) >= window_start
        ),
        days_since_last_order=(now - last_order_at).days if last_order_at else None,
    )
    return {
        "customer": {
            "id": customer.pk,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "vip_tier": customer.vip_tier,
            "is_vip": customer.is_vip,
            "account_type": customer.account_type,
            "created_at": _iso(customer.created_at),
            "erased": erased,
        },
        "identities": identities,
        "orders": orders,
        "tickets": tickets,
        "interactions": {"recent": [item.as_dict() for item in recent]},
        "sentiment": sentiment,
        "csat": csat,
        "churn": churn_risk(signals).as_dict(),
        "generated_at": now.isoformat(),
        VIEWER_KEY: {
            "scored": [
                [p.ticket_id, p.occurred_at.isoformat(), float(p.score), p.scope]
                for p in _scored(points)
                if p.score is not None
            ],
            "csat": [list(a) for a in answers],
        },
    }


def _orders(customer: Customer, *, window_start: datetime, now: datetime) -> dict[str, Any]:
    qs = Order.objects.filter(customer=customer)
    recent = [
        {
            "number": o.number,
            "status": o.status,
            "currency": o.currency,
            "total": _money(o.total),
            "refunded_amount": _money(o.refunded_amount),
            "items": o.items,
            "placed_at": _iso(o.placed_at),
        }
        for o in qs.order_by("-placed_at", "-id")[:RECENT_ORDERS]
    ]
    # One grouped query gives the counts, churn signals and lifetime value per currency.
    counted = ~Q(status__in=FAILED_ORDER_STATUSES)
    rows = list(
        qs.values("currency")
        .annotate(
            count=Count("id"),
            last_placed_at=Max("placed_at"),
            failed_90d=Count(
                "id", filter=Q(status__in=FAILED_ORDER_STATUSES, placed_at__gte=window_start)
            ),
            refunds_90d=Count(
                "id", filter=Q(status__in=REFUND_ORDER_STATUSES, updated_at__gte=window_start)
            ),
            total=Sum("total", filter=counted),
            refunded=Sum("refunded_amount", filter=counted),
            counted=Count("id", filter=counted),
        )
        .order_by("currency")
    )
    by_currency = {
        row["currency"]: {"total": _money(row["total"]), "refunded": _money(row["refunded"])}
        for row in rows
        if row["counted"]
    }
    totals = {
        "count": sum(row["count"] for row in rows),
        "last_placed_at": max((row["last_placed_at"] for row in rows), default=None),
        "failed_90d": sum(row["failed_90d"] for row in rows),
        "refunds_90d": sum(row["refunds_90d"] for row in rows),
    }
    return {
        "count": totals["count"],
        "lifetime_value": by_currency,
        "recent": recent,
        "_last_placed_at": totals["last_placed_at"],
        "_failed_90d": totals["failed_90d"],
        "_refunds_90d": totals["refunds_90d"],
    }


def _tickets(customer: Customer) -> dict[str, Any]:
    qs = Ticket.objects.filter(customer=customer)
    totals = qs.aggregate(total=Count("id"), open=Count("id", filter=Q(status__in=OPEN_STATUSES)))
    recent = [
        {
            "id": t.pk,
            "number": t.number,
            "subject": t.subject,
            "status": t.status,
            "channel": t.channel,
            "created_at": _iso(t.created_at),
        }
        for t in qs.order_by("-created_at", "-id").only(
            "id", "subject", "status", "channel", "created_at"
        )[:RECENT_TICKETS]
    ]
    return {"total": totals["total"], "open": totals["open"], "recent": recent}


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 4) if values else None


def _scored(points: list[ScorePoint]) -> list[ScorePoint]:
    """The scored contacts (messages and calls), oldest first."""
    return [p for p in points if p.score is not None and p.kind in CONTACT_KINDS]


def _sentiment(points: list[ScorePoint], *, now: datetime) -> dict[str, Any]:
    scored = _scored(points)
    scores = [float(p.score) for p in scored if p.score is not None]
    recent = scores[-SENTIMENT_SAMPLE:]
    previous = scores[-2 * SENTIMENT_SAMPLE : -SENTIMENT_SAMPLE]
    recent_avg, previous_avg = _mean(recent), _mean(previous)
    direction = "unknown"
    if recent_avg is not None and previous_avg is not None:
        delta = score_delta(recent_avg, previous_avg)
        direction = "improving" if delta >= 0.15 else "declining" if delta <= -0.15 else "stable"
    return {
        "recent_average": recent_avg,
        "previous_average": previous_avg,
        "direction": direction,
        **_sentiment_shown(
            [(p.occurred_at, float(p.score)) for p in scored if p.score is not None], now=now
        ),
    }


def _sentiment_shown(scored: list[tuple[datetime, float]], *, now: datetime) -> dict[str, Any]:
    """What dates or counts the scored contacts ``(time, score)``, oldest first: the last
    score, how many in the window, the weekly strip (over what the viewer may see)."""
    weeks: dict[int, list[float]] = defaultdict(list)
    for at, score in scored:
        age_weeks = (now - at).days // 7
        if age_weeks < TREND_WEEKS:
            weeks[age_weeks].append(score)
    today = timezone.localdate(now)
    trend = []
    for age in range(TREND_WEEKS - 1, -1, -1):
        values = weeks.get(age, [])
        trend.append(
            {
                "week_ending": (today - timedelta(days=7 * age)).isoformat(),
                "average": _mean(values),
                "count": len(values),
            }
        )
    return {
        "last": scored[-1][1] if scored else None,
        "scored_messages_90d": len(scored),
        "weekly": trend,
    }


def _csat_answers(customer: Customer) -> list[tuple[int, int, str]]:
    """The customer's CSAT answers ``(ticket id, rating, time)``, newest first; answers on
    merged tickets (closed duplicates) count nowhere, as in csat_summary. One per ticket."""
    qs = CsatFeedback.objects.filter(customer=customer, ticket__merged_into__isnull=True)
    return [
        (ticket_id, rating, at.isoformat())
        for ticket_id, rating, at in qs.order_by("-updated_at", "-id").values_list(
            "ticket_id", "rating", "updated_at"
        )
    ]


def _csat_figures(answers: list[tuple[int, int, str]]) -> dict[str, Any]:
    """The ``csat`` part of the context from answers, newest first."""
    ratings = [rating for _, rating, _ in answers]
    last = answers[0] if answers else None
    return {
        "average": round(fmean(ratings), 2) if ratings else None,
        "count": len(ratings),
        "last": {"ticket_id": last[0], "rating": last[1], "at": last[2]} if last else None,
    }


def context_dead_letters_by_kind() -> dict[str, int]:
    """Customer-context work that gave up and waits for a supervisor (a re-drive or a
    discard), however old, by kind: ``support_context_dead_letters{kind}``. The table
    holds only such rows, so the count is the table's."""
    rows = ContextDeadLetter.objects.values("kind").annotate(n=Count("pk")).order_by()
    return {row["kind"]: row["n"] for row in rows}


def message_ticket_id_get(*, message_id: int) -> int | None:
    """The ticket of message ``message_id`` (None: no such message): whose a dead letter
    of its interaction is."""
    return Message.objects.filter(pk=message_id).values_list("ticket_id", flat=True).first()
