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

from django.db.models import Avg, Count, Max, Q, Sum
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.errors import NotFound
from support.parsing import parse_id
from tickets.context.cache import context_cache_get, context_cache_set
from tickets.context.churn import ChurnSignals, churn_risk, score_delta
from tickets.context.interactions import ScorePoint, get_backend
from tickets.context.models import (
    FAILED_ORDER_STATUSES,
    REFUND_ORDER_STATUSES,
    CsatFeedback,
    CustomerErasure,
    InteractionKind,
    Order,
)
from tickets.models import ChannelIdentity, Customer, Ticket, TicketStatus
from tickets.selectors import visible_ticket_ids

RECENT_ORDERS = 10
RECENT_INTERACTIONS = 10
RECENT_TICKETS = 5
TREND_WEEKS = 12
WINDOW_DAYS = 90
SENTIMENT_SAMPLE = 5
CONTACT_KINDS = frozenset({InteractionKind.MESSAGE, InteractionKind.CALL})
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


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


def customer_context_get(customer: Customer, *, use_cache: bool = True) -> dict[str, Any]:
    """The customer's context, from the cache when fresh (see ``tickets.context.cache``)."""
    stamp = _stamp(customer)
    if use_cache:
        cached = context_cache_get(customer.pk, stamp=stamp)
        if cached is not None:
            return cached
    data = customer_context_build(customer)
    if use_cache:
        context_cache_set(customer.pk, stamp=stamp, data=data)
    return data


def customer_context_for(customer: Customer, *, user: Any) -> dict[str, Any]:
    """The context as ``user`` may see it. The caller has checked that the customer is
    visible (``tickets.selectors.customer_get_visible`` or a visible ticket of theirs).

    Lists tied to a ticket the user may not see are left out: recent tickets, recent
    interactions of those tickets, the last CSAT answer. Counts, sentiment trend, CSAT
    average and churn risk are the customer's whole history (figures, not content).
    One extra query for agents; none for supervisors.
    """
    data = customer_context_get(customer)
    if is_supervisor(user):
        return data
    tickets = data["tickets"]
    interactions = data["interactions"]
    last_csat = data["csat"]["last"]
    ids = {t["id"] for t in tickets["recent"]}
    ids |= {i["ticket_id"] for i in interactions["recent"] if i.get("ticket_id") is not None}
    if last_csat is not None:
        ids.add(last_csat["ticket_id"])
    visible = visible_ticket_ids(user, ids)
    return {
        **data,
        "tickets": {**tickets, "recent": [t for t in tickets["recent"] if t["id"] in visible]},
        "interactions": {
            **interactions,
            "recent": [
                i
                for i in interactions["recent"]
                if i.get("ticket_id") is None or i["ticket_id"] in visible
            ],
        },
        "csat": {
            **data["csat"],
            "last": last_csat if last_csat and last_csat["ticket_id"] in visible else None,
        },
    }


def customer_context_build(customer: Customer, *, now: datetime | None = None) -> dict[str, Any]:
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
    csat = _csat(customer, window_start=window_start)

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
        low_csat_90d=csat.pop("_low_90d"),
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


def _sentiment(points: list[ScorePoint], *, now: datetime) -> dict[str, Any]:
    scored = [p for p in points if p.score is not None and p.kind in CONTACT_KINDS]
    scores = [float(p.score) for p in scored if p.score is not None]
    recent = scores[-SENTIMENT_SAMPLE:]
    previous = scores[-2 * SENTIMENT_SAMPLE : -SENTIMENT_SAMPLE]
    recent_avg, previous_avg = _mean(recent), _mean(previous)
    direction = "unknown"
    if recent_avg is not None and previous_avg is not None:
        delta = score_delta(recent_avg, previous_avg)
        direction = "improving" if delta >= 0.15 else "declining" if delta <= -0.15 else "stable"
    weeks: dict[int, list[float]] = defaultdict(list)
    for p in scored:
        age_weeks = (now - p.occurred_at).days // 7
        if age_weeks < TREND_WEEKS and p.score is not None:
            weeks[age_weeks].append(float(p.score))
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
        "recent_average": recent_avg,
        "previous_average": previous_avg,
        "last": scores[-1] if scores else None,
        "direction": direction,
        "scored_messages_90d": len(scores),
        "weekly": trend,
    }


def _csat(customer: Customer, *, window_start: datetime) -> dict[str, Any]:
    # Answers on merged tickets (closed duplicates) count nowhere, as in csat_summary.
    qs = CsatFeedback.objects.filter(customer=customer, ticket__merged_into__isnull=True)
    totals = qs.aggregate(
        average=Avg("rating"),
        count=Count("id"),
        low_90d=Count("id", filter=Q(rating__lte=2, updated_at__gte=window_start)),
    )
    last = qs.order_by("-updated_at", "-id").values("ticket_id", "rating", "updated_at").first()
    return {
        "average": round(float(totals["average"]), 2) if totals["average"] is not None else None,
        "count": totals["count"],
        "last": {
            "ticket_id": last["ticket_id"],
            "rating": last["rating"],
            "at": _iso(last["updated_at"]),
        }
        if last
        else None,
        "_low_90d": totals["low_90d"],
    }
