"""Load everything the tools need in one place, before any agent runs (tools run on worker
threads with their own database connections and must not query)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from routing.classifier import TextRouter, routed_text
from routing.customer_db import customer_vip_get
from routing.models import CategoryTeam, Outage, RoutingDecision, ServiceStatus
from routing.tools import CustomerInfo, PastTicket, ServiceInfo, TicketContext
from tickets.context.privacy import customer_redaction_names
from tickets.models import Direction, Message, Team, Ticket
from tickets.selectors import ticket_opened_by_system

HISTORY_DAYS = 90
HISTORY_LIMIT = 20


def customer_messages(ticket: Ticket, *, with_words: bool = False) -> QuerySet[Message]:
    """The customer's messages on ``ticket``, first first (``with_words``: those whose
    text is not blank, not a photo alone): the first is the one routing reads
    (:func:`ticket_text`)."""
    messages = ticket.messages.filter(direction=Direction.INBOUND, kind="public")
    if with_words:
        messages = messages.filter(body_text__regex=r"\S")
    return messages.order_by("created_at", "id")


def ticket_text(ticket: Ticket) -> str:
    """Subject and the first customer message, cut as the router reads every text
    (``classifier.routed_text``: at most ``ROUTED_TEXT_MAX_CHARS``, training alike).

    A ticket the system opened (``tickets.selectors.ticket_opened_by_system``: an IVR
    failure's "IVR failure: max retries (…)") has a subject of the system's words, which
    is no customer's question or mood: only the customer's message counts, and before one
    arrives the text is empty (the decision goes to review, ``NO_CUSTOMER_TEXT``). There,
    the customer's first message *with words* is read (a photo sent alone is not the
    question): the one that routes such a ticket again (``routing.services.
    routing_customer_text_decide``)."""
    if ticket_opened_by_system(ticket=ticket):
        words = customer_messages(ticket, with_words=True).values_list("body_text", flat=True)
        return routed_text((words.first() or "").strip())
    first = customer_messages(ticket).values_list("body_text", flat=True).first()
    body = (first or "").strip()
    subject = ticket.subject.strip()
    if body.lower().startswith(subject.lower()):
        return routed_text(body)
    return routed_text(f"{subject}. {body}" if body else subject)


# Bitext category → team slug (tickets/demo.py TEAMS); rows in CategoryTeam (admin) win.
DEFAULT_CATEGORY_TEAMS = {
    "ACCOUNT": "accounts",
    "NEWSLETTER": "accounts",
    "ORDER": "orders",
    "DELIVERY": "orders",
    "SHIPPING_ADDRESS": "orders",
    "INVOICE": "billing",
    "PAYMENT": "billing",
    "REFUND": "billing",
    "CANCELLATION_FEE": "billing",
    "CONTACT": "customer-care",
    "FEEDBACK": "customer-care",
}


def team_map() -> tuple[dict[str, str], dict[str, str]]:
    """Category → team slug (defaults, then the admin-managed rows) and slug → name."""
    names = dict(Team.objects.values_list("slug", "name"))
    mapping = {cat: slug for cat, slug in DEFAULT_CATEGORY_TEAMS.items() if slug in names}
    mapping.update(
        {row.category: row.team.slug for row in CategoryTeam.objects.select_related("team")}
    )
    return mapping, names


def _services() -> list[ServiceInfo]:
    active = Outage.objects.filter(resolved_at__isnull=True)
    by_service: dict[int, list[dict[str, object]]] = {}
    for outage in active:
        by_service.setdefault(outage.service_id, []).append(
            {
                "title": outage.title,
                "known_issue": outage.is_known_issue,
                "since": outage.started_at.isoformat(),
            }
        )
    return [
        ServiceInfo(
            service_id=svc.service_id,
            name=svc.name,
            state=svc.state,
            keywords=tuple(k.strip() for k in svc.keywords.split(",") if k.strip()),
            categories=tuple(c.strip().upper() for c in svc.categories.split(",") if c.strip()),
            outages=tuple(by_service.get(svc.pk, [])),
        )
        for svc in ServiceStatus.objects.all()
    ]


def _history(ticket: Ticket) -> list[PastTicket]:
    now = timezone.now()
    since = now - timedelta(days=HISTORY_DAYS)
    past = list(
        Ticket.objects.filter(customer_id=ticket.customer_id, created_at__gte=since)
        .exclude(pk=ticket.pk)
        .order_by("-created_at")[:HISTORY_LIMIT]
    )
    # each past ticket's latest decision (the later rows overwrite the earlier)
    latest = {
        ticket_id: (category, review)
        for ticket_id, category, review in RoutingDecision.objects.filter(ticket__in=past)
        .order_by("ticket_id", "created_at")
        .values_list("ticket_id", "category", "requires_manual_review")
    }
    return [
        PastTicket(
            number=p.number,
            subject=p.subject,
            status=p.status,
            priority=p.priority,
            category=latest.get(p.pk, ("", False))[0],
            escalated=p.priority == "urgent",
            age_days=(now - p.created_at).total_seconds() / 86400,
            manual_review=latest.get(p.pk, ("", False))[1],
        )
        for p in past
    ]


def ticket_context_load(
    ticket: Ticket, *, router: TextRouter, router_model_id: int | None
) -> TicketContext:
    now = timezone.now()
    waiting = ticket.waiting_since or ticket.created_at
    mapping, names = team_map()
    # seed 004's customer database when configured, else (or failing) the customer row
    found = customer_vip_get(ticket.customer)
    return TicketContext(
        ticket_id=ticket.pk,
        number=ticket.number,
        text=ticket_text(ticket),
        customer=CustomerInfo(
            id=ticket.customer_id,
            vip_tier=found.vip_tier,
            account_type=found.account_type,
            source=found.source,
            lookup=found.record,
        ),
        waiting_minutes=max(0.0, (now - waiting).total_seconds() / 60),
        history=_history(ticket),
        services=_services(),
        team_map=mapping,
        team_names=names,
        vip_billing_team=settings.ROUTING_VIP_BILLING_TEAM,
        router=router,
        router_model_id=router_model_id,
        redact_names=customer_redaction_names(ticket.customer_id),
    )
