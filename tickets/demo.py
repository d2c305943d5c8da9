"""Demo data: teams, agents, a supervisor, an administrator, customers and ~200 tickets
from Bitext."""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from tickets import services
from tickets.context.models import CsatFeedback
from tickets.models import (
    AccountType,
    BusinessCalendar,
    BusinessHours,
    CannedResponse,
    Channel,
    Customer,
    Direction,
    Holiday,
    Message,
    MessageKind,
    Priority,
    SlaEscalateOn,
    SlaEvent,
    SlaEventKind,
    SlaPolicy,
    SlaTarget,
    Team,
    Ticket,
    TicketStatus,
    VipTier,
)
from tickets.services import sla as sla_services

DATA_FILE = Path(__file__).resolve().parent / "demo_data" / "bitext_demo.csv"
DEMO_TAG = "demo"
#: The demo ticket whose first response is late, so the SLA checker records a breach (and
#: raises an alert) right after a demo load.
SLA_DEMO_TAG = "sla-demo"
DEMO_TICKETS = 200

# Bitext category → the team that handles it (the routing app's default map mirrors this).
TEAMS = {
    "accounts": ("Accounts", "Sign-up, login, profile and newsletter.", ["ACCOUNT", "NEWSLETTER"]),
    "orders": (
        "Orders & Delivery",
        "Orders, delivery and shipping addresses.",
        ["ORDER", "DELIVERY", "SHIPPING_ADDRESS"],
    ),
    "billing": (
        "Billing",
        "Invoices, payments, refunds and fees.",
        ["INVOICE", "PAYMENT", "REFUND", "CANCELLATION_FEE"],
    ),
    "customer-care": (
        "Customer Care",
        "Contact requests, complaints and feedback.",
        ["CONTACT", "FEEDBACK"],
    ),
    "priority-billing": ("Priority Billing", "Billing for VIP customers.", []),
}
FIRST = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Mateo",
    "Sofia",
    "Lucas",
    "Mia",
    "Ethan",
    "Amara",
    "Yusuf",
    "Chloe",
    "Hiro",
    "Priya",
    "Diego",
    "Fatima",
    "Jonas",
    "Lena",
    "Omar",
]
LAST = [
    "Smith",
    "García",
    "Müller",
    "Okafor",
    "Tanaka",
    "Kowalski",
    "Rossi",
    "Nguyen",
    "Johansson",
    "Patel",
    "Dubois",
    "Silva",
    "O'Brien",
    "Haddad",
    "Novak",
]
CHANNELS = [
    Channel.EMAIL,
    Channel.WHATSAPP,
    Channel.WEBCHAT,
    Channel.MESSENGER,
    Channel.INSTAGRAM,
    Channel.TWITTER,
    Channel.CHATBOT,
    Channel.API,
]
PLACEHOLDER = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


def _fill(text: str, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        if "order" in name or "purchase" in name:
            return f"#{rng.randint(100000, 999999)}"
        if "invoice" in name:
            return f"INV-{rng.randint(10000, 99999)}"
        if "phone" in name:
            return "+1 555 0100"
        if "hour" in name:
            return "9am–6pm"
        if "website" in name or "url" in name:
            return "https://support.example.com"
        if "refund" in name and "amount" in name:
            return "$49.90"
        return match.group(1)

    return PLACEHOLDER.sub(value, text)


def _subject(text: str) -> str:
    text = " ".join(text.split())
    subject = text[:1].upper() + text[1:]
    return subject if len(subject) <= 80 else subject[:77].rsplit(" ", 1)[0] + "…"


DEMO_CANNED = [
    (
        "hello",
        "Greeting",
        "Hi {{ customer.first_name }},\n\nThanks for contacting us about "
        "{{ ticket.subject }} ({{ ticket.number }}). ",
    ),
    (
        "bye",
        "Closing",
        "I hope this helps! If anything else comes up, just reply here.\n\n"
        "Best regards,\n{{ agent.first_name }}",
    ),
    (
        "escalate",
        "Escalated to specialists",
        "Hi {{ customer.first_name }}, I've passed {{ ticket.number }} to our specialist "
        "team; they will get back to you within one business day.",
    ),
]


def _demo_csat(ticket_id: int, rng: random.Random) -> None:
    """Most resolved demo tickets get a CSAT answer, dated at their resolution (moved back
    with the opening by ``_sla_from_opening``), so the dashboard's CSAT chart has data."""
    ticket = Ticket.objects.get(pk=ticket_id)
    if ticket.resolved_at is None or rng.random() >= 0.7:
        return
    feedback, _ = CsatFeedback.objects.get_or_create(
        ticket=ticket,
        defaults={
            "customer_id": ticket.customer_id,
            "rating": rng.choice([5, 5, 5, 4, 4, 3, 2, 1]),
        },
    )
    CsatFeedback.objects.filter(pk=feedback.pk).update(
        created_at=ticket.resolved_at, updated_at=ticket.resolved_at
    )


DemoStep = Callable[[Callable[[str], None]], None]
_demo_steps: dict[str, DemoStep] = {}


def demo_step_register(name: str, step: DemoStep) -> None:
    """A feature app's part of the demo (registered in its ``AppConfig.ready``), run by
    ``load_demo`` after the core's tickets, every time: a step must be idempotent."""
    _demo_steps[name] = step


def load_demo(*, password: str | None = None, progress: Callable[[str], None] = print) -> bool:
    """Create the demo world; returns False when it was already there (idempotent). The
    apps' demo steps (``demo_step_register``) run after it either way."""
    created = _load_core(password=password, progress=progress)
    for step in _demo_steps.values():
        step(progress)
    if created:
        # After the steps: routing the demo history may raise priorities (shorter SLA
        # targets), and those overdue targets are history too, not fresh breaches.
        _sla_history(now=timezone.now())
    return created


def _demo_administrator(password: str) -> None:
    """The demo's superuser, ``admin`` (users, API keys, channel accounts), once."""
    administrator, created = get_user_model().objects.get_or_create(
        username="admin",
        defaults={
            "email": "admin@example.com",
            "first_name": "Alex",
            "last_name": "Admin",
            "is_staff": True,
            "is_superuser": True,
        },
    )
    if created:
        administrator.set_password(password)
        administrator.save()


def _load_core(*, password: str | None, progress: Callable[[str], None]) -> bool:
    for shortcut, title, body in DEMO_CANNED:
        CannedResponse.objects.get_or_create(
            shortcut=shortcut, defaults={"title": title, "body": body}
        )
    if Ticket.objects.filter(tags__name=DEMO_TAG).count() >= DEMO_TICKETS:
        # an installation loaded before SLA policies existed gets them (and the ticket)
        sla_demo_policies()
        oldest = Customer.objects.order_by("pk").first()
        if oldest is not None:
            _sla_breaching_ticket(oldest, now=timezone.now())
        # an installation loaded when `supervisor` was the superuser gets the `admin` login
        _demo_administrator(password or settings.DEMO_PASSWORD)
        progress("demo data already loaded")
        return False
    password = password or settings.DEMO_PASSWORD
    rng = random.Random(42)
    with transaction.atomic():
        agents_group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
        supervisors_group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
        user_model = get_user_model()
        # The supervisor is the role as a deployment has it (staff, the Supervisors group:
        # the workbench, the dashboard and the supervisor's admin pages), not a superuser:
        # API keys, channel accounts and users are the administrator's, a separate login.
        supervisor, created = user_model.objects.get_or_create(
            username="supervisor",
            defaults={
                "email": "supervisor@example.com",
                "first_name": "Sam",
                "last_name": "Rivera",
                "is_staff": True,
            },
        )
        if created:
            supervisor.set_password(password)
            supervisor.save()
        supervisor.groups.add(supervisors_group)
        _demo_administrator(password)

        teams: dict[str, Team] = {}
        for slug, (name, description, _) in TEAMS.items():
            teams[slug], _ = Team.objects.get_or_create(
                slug=slug, defaults={"name": name, "description": description}
            )
        agents = []
        for i in range(1, 7):
            agent, created = user_model.objects.get_or_create(
                username=f"agent{i}",
                defaults={
                    "email": f"agent{i}@example.com",
                    "first_name": FIRST[i],
                    "last_name": LAST[i],
                },
            )
            if created:
                agent.set_password(password)
                agent.save()
            agent.groups.add(agents_group)
            team_slug = list(TEAMS)[(i - 1) % 4]
            teams[team_slug].members.add(agent)
            agents.append(agent)
        teams["priority-billing"].members.add(agents[2])
        # agent1, the sign-in `make run` prints, also answers Billing: the demo's calls are
        # on the Billing and Support queues, and an agent sees the calls of their teams.
        teams["billing"].members.add(agents[0])
        progress("teams, 6 agents, a supervisor and an administrator ready")
        sla_demo_policies()
        progress("SLA calendars and policies ready")

        customers = []
        for i in range(60):
            first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
            email = f"{first}.{last}.{i}@example.com".lower().replace("'", "")
            tier = VipTier.NONE
            if i % 10 == 0:
                tier = VipTier.GOLD
            elif i % 15 == 1:
                tier = VipTier.PLATINUM
            customer, _ = services.customer_get_or_create(
                email=email,
                name=f"{first} {last}",
                phone=f"+1555{1000000 + i * 7919:07d}"[:12],
                defaults={
                    "vip_tier": tier,
                    "account_type": AccountType.BUSINESS if i % 6 == 0 else AccountType.INDIVIDUAL,
                },
            )
            customers.append(customer)
        progress(f"{len(customers)} customers ready")

    with DATA_FILE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rng.shuffle(rows)
    have = Ticket.objects.filter(tags__name=DEMO_TAG).count()
    now = timezone.now()
    category_team = {cat: slug for slug, (_, _, cats) in TEAMS.items() for cat in cats}
    timing_rng = random.Random(7)  # its own sequence: the tickets' content stays as it was
    for index, row in enumerate(rows[have:DEMO_TICKETS], start=have):
        customer = customers[index % len(customers)]
        text = _fill(row["instruction"], rng)
        with transaction.atomic():
            ticket = services.ticket_create(
                customer=customer,
                subject=_subject(text),
                body=text,
                channel=CHANNELS[index % len(CHANNELS)],
                priority=rng.choice(
                    [
                        Priority.LOW,
                        Priority.NORMAL,
                        Priority.NORMAL,
                        Priority.HIGH,
                        Priority.URGENT if index % 17 == 0 else Priority.NORMAL,
                    ]
                ),
                tags=[DEMO_TAG, row["intent"].replace("_", "-")],
                is_bot_handoff=CHANNELS[index % len(CHANNELS)] == Channel.CHATBOT,
            )
            roll = rng.random()
            if roll < 0.55:
                team = teams[category_team.get(row["category"], "customer-care")]
                services.ticket_update(ticket=ticket, team=team, actor=None)
                agent = agents[index % len(agents)]
                services.ticket_assign(ticket=ticket, assignee=agent, actor=supervisor)
                services.message_add(
                    ticket=ticket,
                    body=_fill(row["response"], rng),
                    author_user=agent,
                    delivery_status="delivered",
                )
                if roll < 0.15:
                    services.message_add(
                        ticket=ticket,
                        kind=MessageKind.INTERNAL_NOTE,
                        body="Checked the order history; nothing unusual.",
                        author_user=agent,
                    )
                if roll < 0.3:
                    services.ticket_update(ticket=ticket, status=TicketStatus.RESOLVED, actor=agent)
                elif roll < 0.4:
                    services.ticket_update(ticket=ticket, status=TicketStatus.PENDING, actor=agent)
                    services.message_add(
                        ticket=ticket,
                        body="Thanks, that helps.",
                        direction=Direction.INBOUND,
                        author_customer=customer,
                    )
            opened_at = now - timedelta(minutes=rng.randint(5, 14 * 24 * 60))
            Ticket.objects.filter(pk=ticket.pk).update(created_at=opened_at)
            Ticket.objects.filter(pk=ticket.pk, waiting_since__isnull=False).update(
                waiting_since=opened_at
            )
            _sla_from_opening(ticket.pk, now=now, rng=random.Random(index))
            _messages_from_opening(ticket.pk, now=now, rng=random.Random(-index - 1))
            _demo_csat(ticket.pk, timing_rng)
        if (index + 1) % 50 == 0:
            progress(f"{index + 1}/{DEMO_TICKETS} tickets")
    _sla_breaching_ticket(customers[0], now=now)
    _customers_since(customers, rng=random.Random(11))
    progress(f"demo data loaded: {Ticket.objects.filter(tags__name=DEMO_TAG).count()} tickets")
    return True


def sla_demo_policies() -> None:
    """Default SLA policies per priority over two calendars (idempotent by name)."""
    office, created = BusinessCalendar.objects.get_or_create(
        name="Office hours", defaults={"timezone": settings.TIME_ZONE}
    )
    if created:
        for weekday in range(5):
            BusinessHours.objects.create(
                calendar=office, weekday=weekday, opens_at=time(9), closes_at=time(18)
            )
        year = timezone.localdate().year
        for y in (year, year + 1):
            Holiday.objects.create(calendar=office, date=date(y, 1, 1), name="New Year's Day")
            Holiday.objects.create(calendar=office, date=date(y, 12, 25), name="Christmas Day")
    always, _ = BusinessCalendar.objects.get_or_create(
        name="Around the clock", defaults={"timezone": settings.TIME_ZONE, "is_24_7": True}
    )
    # name: priority, calendar, first response, resolution (minutes), raise priority
    defaults = {
        "Urgent (24/7)": (Priority.URGENT, always, 30, 4 * 60, False),
        "High": (Priority.HIGH, office, 60, 8 * 60, True),
        "Normal": (Priority.NORMAL, office, 4 * 60, 2 * 9 * 60, False),
        "Low": (Priority.LOW, office, 8 * 60, 5 * 9 * 60, False),
    }
    for name, (priority, calendar, first, resolution, raise_it) in defaults.items():
        SlaPolicy.objects.get_or_create(
            name=name,
            defaults={
                "priority": priority,
                "calendar": calendar,
                "first_response_minutes": first,
                "resolution_minutes": resolution,
                "escalate_on": SlaEscalateOn.BREACHED,
                "escalate_raise_priority": raise_it,
            },
        )


def _sla_from_opening(ticket_id: int, *, now: datetime, rng: random.Random | None = None) -> None:
    """Due times from the back-dated opening time (as if created then). With ``rng``, the
    first reply and the resolution also move back to a plausible time after the opening
    (minutes to hours; hours to days), so response times and SLA attainment look like a
    real desk's: some met, some missed."""
    ticket = Ticket.objects.get(pk=ticket_id)
    fields = sla_services.ticket_sla_recompute(ticket)
    if rng is not None and ticket.first_response_at is not None:
        ticket.first_response_at = min(
            now, ticket.created_at + timedelta(minutes=rng.randint(5, 8 * 60))
        )
        fields.append("first_response_at")
        if ticket.resolved_at is not None:
            ticket.resolved_at = min(
                now, ticket.first_response_at + timedelta(minutes=rng.randint(30, 3 * 24 * 60))
            )
            ticket.sla_paused_at = ticket.resolved_at
            fields += ["resolved_at", "sla_paused_at"]
    ticket.save(update_fields=fields)


def _messages_from_opening(ticket_id: int, *, now: datetime, rng: random.Random) -> None:
    """The conversation follows the back-dated ticket: the customer's first message at the
    opening, the first public reply at ``first_response_at``, the resolution at
    ``resolved_at``, a customer's later answer hours after what came before it, everything
    else a minute or two after, never after ``now``; the ticket's last-message and
    waiting times from those. (The messages kept their load time, so a ticket opened days
    ago showed its first reply dated before the question it answers.)"""
    ticket = Ticket.objects.get(pk=ticket_id)
    messages = list(ticket.messages.order_by("created_at", "pk"))
    replied_at, resolved_at = ticket.first_response_at, ticket.resolved_at
    at = ticket.created_at
    replied = False
    for position, message in enumerate(messages):
        public = message.kind == MessageKind.PUBLIC
        status = (message.metadata.get("changes") or {}).get("status") or [None, None]
        if position == 0:
            at = ticket.created_at
        elif public and message.direction == Direction.OUTBOUND and not replied:
            replied = True
            at = max(at, replied_at or at)
        elif public and message.direction == Direction.INBOUND:
            at += timedelta(minutes=rng.randint(20, 18 * 60))
        elif status[1] == TicketStatus.RESOLVED and resolved_at is not None:
            at = max(at, resolved_at)
        else:
            at += timedelta(minutes=rng.randint(1, 3))
            if not replied and replied_at is not None:
                at = min(at, replied_at)  # what happened before the first reply
        message.created_at = min(at, now)
        for field in ("sent_at", "delivered_at"):
            if getattr(message, field) is not None:
                setattr(message, field, message.created_at)
    Message.objects.bulk_update(messages, ["created_at", "sent_at", "delivered_at"])
    conversation = [m for m in messages if m.kind != MessageKind.SYSTEM]
    fields: dict[str, datetime | None] = {}
    if conversation:
        fields["last_message_at"] = conversation[-1].created_at
    if ticket.waiting_since is not None:
        unanswered = [
            m.created_at
            for m in conversation
            if m.kind == MessageKind.PUBLIC and m.direction == Direction.INBOUND
        ]
        answered = [
            m.created_at
            for m in conversation
            if m.kind == MessageKind.PUBLIC and m.direction == Direction.OUTBOUND
        ]
        waiting = [t for t in unanswered if not answered or t > answered[-1]]
        fields["waiting_since"] = waiting[0] if waiting else ticket.created_at
    Ticket.objects.filter(pk=ticket_id).update(**fields)


def _sla_history(*, now: datetime) -> None:
    """The back-dated backlog was overdue before "today": record those breaches as past
    ones (no event, no escalation), so the checker's first run after a demo load alerts
    about the one fresh breach (the ``sla-demo`` ticket), not about a hundred old ones."""
    from tickets.services.sla import FIRST_RESPONSE_OPEN, RESOLUTION_OPEN

    demo_tickets = Ticket.objects.filter(tags__name=DEMO_TAG, merged_into__isnull=True)
    rows = [
        SlaEvent(
            ticket_id=pk,
            target=SlaTarget.FIRST_RESPONSE,
            kind=SlaEventKind.BREACHED,
            due_at=due,
            policy_name=name or "",
        )
        for pk, due, name in demo_tickets.filter(
            status__in=FIRST_RESPONSE_OPEN,
            first_response_at__isnull=True,
            first_response_due_at__lte=now,
        ).values_list("pk", "first_response_due_at", "sla_policy__name")
        if due is not None
    ]
    rows += [
        SlaEvent(
            ticket_id=pk,
            target=SlaTarget.RESOLUTION,
            kind=SlaEventKind.BREACHED,
            due_at=due,
            policy_name=name or "",
        )
        for pk, due, name in demo_tickets.filter(
            status__in=RESOLUTION_OPEN, sla_paused_at__isnull=True, resolution_due_at__lte=now
        ).values_list("pk", "resolution_due_at", "sla_policy__name")
        if due is not None
    ]
    SlaEvent.objects.bulk_create(rows, ignore_conflicts=True)


def _sla_breaching_ticket(customer: Customer, *, now: datetime) -> None:
    """An urgent email nobody answered for two hours: its 30-minute first response (24/7)
    is overdue, so the checker's first run records the breach."""
    if Ticket.objects.filter(tags__name=SLA_DEMO_TAG).exists():
        return
    ticket = services.ticket_create(
        customer=customer,
        subject="Charged twice and still no refund",
        body="I was charged twice for order 4471 and nobody has answered. Please help!",
        channel=Channel.EMAIL,
        priority=Priority.URGENT,
        tags=[SLA_DEMO_TAG],
    )
    opened_at = now - timedelta(hours=2)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=opened_at, waiting_since=opened_at)
    _sla_from_opening(ticket.pk, now=now)
    _messages_from_opening(ticket.pk, now=now, rng=random.Random(0))


def _customers_since(customers: list[Customer], *, rng: random.Random) -> None:
    """Each demo customer became one a while before their first (back-dated) ticket: the
    ticket page's "Customer since" read the day of the demo load, after tickets opened
    two weeks earlier. Customers already older than their first ticket stay as they are."""
    firsts = dict(
        Ticket.objects.filter(customer__in=customers)
        .values_list("customer_id")
        .annotate(first=Min("created_at"))
    )
    changed = []
    for customer in customers:
        first = firsts.get(customer.pk)
        if first is None or customer.created_at <= first:
            continue
        customer.created_at = first - timedelta(days=rng.randint(20, 3 * 365))
        changed.append(customer)
    Customer.objects.bulk_update(changed, ["created_at"])


def demo_customer_count() -> int:
    return Customer.objects.count()
