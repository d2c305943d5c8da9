"""Demo data: teams, agents, a supervisor, customers and ~200 tickets from Bitext."""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from tickets import services
from tickets.context.models import CsatFeedback
from tickets.models import (
    AccountType,
    CannedResponse,
    Channel,
    Customer,
    Direction,
    MessageKind,
    Priority,
    Team,
    Ticket,
    TicketStatus,
    VipTier,
)

DATA_FILE = Path(__file__).resolve().parent / "demo_data" / "bitext_demo.csv"
DEMO_TAG = "demo"
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


def _demo_timings(ticket_id: int, opened_at: datetime, now: datetime, rng: random.Random) -> None:
    """Give a backdated demo ticket plausible first-response and resolution times (the
    services stamped them "now") and, for most resolved ones, a CSAT answer, so the
    supervisor dashboard's charts have something to show."""
    ticket = Ticket.objects.get(pk=ticket_id)
    fields: dict[str, Any] = {}
    if ticket.first_response_at is not None:
        first = min(opened_at + timedelta(minutes=rng.randint(2, 6 * 60)), now)
        fields["first_response_at"] = first
        if ticket.resolved_at is not None:
            resolved = min(first + timedelta(minutes=rng.randint(20, 3 * 24 * 60)), now)
            fields["resolved_at"] = resolved
            if rng.random() < 0.7:
                feedback, _ = CsatFeedback.objects.get_or_create(
                    ticket=ticket,
                    defaults={
                        "customer_id": ticket.customer_id,
                        "rating": rng.choice([5, 5, 5, 4, 4, 3, 2, 1]),
                    },
                )
                CsatFeedback.objects.filter(pk=feedback.pk).update(
                    created_at=resolved, updated_at=resolved
                )
    if fields:
        Ticket.objects.filter(pk=ticket_id).update(**fields)


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
    return created


def _load_core(*, password: str | None, progress: Callable[[str], None]) -> bool:
    for shortcut, title, body in DEMO_CANNED:
        CannedResponse.objects.get_or_create(
            shortcut=shortcut, defaults={"title": title, "body": body}
        )
    if Ticket.objects.filter(tags__name=DEMO_TAG).count() >= DEMO_TICKETS:
        progress("demo data already loaded")
        return False
    password = password or settings.DEMO_PASSWORD
    rng = random.Random(42)
    with transaction.atomic():
        agents_group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
        supervisors_group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
        user_model = get_user_model()
        supervisor, created = user_model.objects.get_or_create(
            username="supervisor",
            defaults={
                "email": "supervisor@example.com",
                "first_name": "Sam",
                "last_name": "Rivera",
                "is_staff": True,
                "is_superuser": True,
            },
        )
        if created:
            supervisor.set_password(password)
            supervisor.save()
        supervisor.groups.add(supervisors_group)

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
        progress("teams, 6 agents and a supervisor ready")

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
            _demo_timings(ticket.pk, opened_at, now, timing_rng)
        if (index + 1) % 50 == 0:
            progress(f"{index + 1}/{DEMO_TICKETS} tickets")
    progress(f"demo data loaded: {Ticket.objects.filter(tags__name=DEMO_TAG).count()} tickets")
    return True


def demo_customer_count() -> int:
    return Customer.objects.count()
