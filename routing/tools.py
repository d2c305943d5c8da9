"""The seven routing tools as plain typed functions.

They take everything they need as arguments (loaded beforehand by ``routing.context``), so
they never touch the database: Strands runs tools on worker threads with their own database
connections, and the same functions serve the local provider and the agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from routing.classifier import TextRouter
from routing.customer_db import tier_is_vip
from support.redaction import CARD_RE, EMAIL_RE, PHONE_RE, luhn_ok, phone_ok
from support.sentiment import sentiment_score

# --- the data the tools work on (loaded before the agent runs) ----------------------------


@dataclass(frozen=True)
class CustomerInfo:
    id: int
    vip_tier: str
    account_type: str
    # where tier and type came from: "local" (the customer row) or "customer_db" (seed 004's
    # customer database, ``routing.customer_db``), and what that lookup did (empty: none)
    source: str = "local"
    lookup: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PastTicket:
    number: str
    subject: str
    status: str
    priority: str
    category: str
    escalated: bool
    age_days: float
    # its latest routing decision was held for a person (seed 004's escalation_history)
    manual_review: bool = False


@dataclass(frozen=True)
class ServiceInfo:
    service_id: str
    name: str
    state: str
    keywords: tuple[str, ...]
    categories: tuple[str, ...]
    outages: tuple[dict[str, Any], ...]


@dataclass
class TicketContext:
    ticket_id: int
    number: str
    text: str
    customer: CustomerInfo
    waiting_minutes: float
    history: list[PastTicket]
    services: list[ServiceInfo]
    team_map: dict[str, str]
    team_names: dict[str, str]
    vip_billing_team: str
    router: TextRouter
    router_model_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The customer's names (full name, channel display names): redacted from anything sent
    # to an LLM (``routing.providers.redacting``); never given to the tools or the model.
    redact_names: tuple[str, ...] = ()


# --- 1. classify_issue --------------------------------------------------------------------


def classify_issue(text: str, router: TextRouter, top: int = 3) -> dict[str, Any]:
    """Category and intent with probabilities (the trained local classifier)."""
    all_probs, in_scope = router.analyse([text])
    probs = all_probs[0]
    score = float(in_scope[0]) if in_scope is not None else None
    order = probs.argsort()[::-1][:top]
    best = router.labels[order[0]]
    cats = router.category_confidences(probs)
    ranked_cats = sorted(cats.items(), key=lambda kv: -kv[1])
    category = router.category_of(best)
    return {
        "category": category,
        "intent": best,
        "confidence": round(float(probs[order[0]]), 4),
        "category_confidence": round(cats.get(category, 0.0), 4),
        "secondary": [
            {
                "intent": router.labels[i],
                "category": router.category_of(router.labels[i]),
                "probability": round(float(probs[i]), 4),
            }
            for i in order[1:]
        ],
        "categories": [{"category": c, "probability": round(p, 4)} for c, p in ranked_cats[:3]],
        # the out-of-scope detector (None when the model has none): unlike any trained intent
        "in_scope": round(score, 4) if score is not None else None,
        "out_of_scope": router.is_out_of_scope(score),
    }


# --- 2. extract_entities ------------------------------------------------------------------

ACCOUNT_RE = re.compile(r"\bACC-\d{3,12}\b")
SERVICE_RE = re.compile(r"\bSVC-?\d{2,10}\b")
ORDER_RE = re.compile(
    r"\b(?:order|purchase)\s*(?:number|no\.?|num|id)?\s*(?:is\s*)?[:#]?\s*#?"
    # the digit looked for within the number's own 20 characters (an unbounded look-ahead
    # read the whole run again after every "order": 11 s on 60 KB of "order-order-...")
    r"((?=[A-Z0-9-]{0,19}\d)[A-Z0-9][A-Z0-9-]{3,19})\b",
    re.IGNORECASE,
)
HASH_NUMBER_RE = re.compile(r"(?<![\w#])#(\d{4,12})\b")
ERROR_RE = re.compile(
    r"\b(?:(?:ERR|ERROR|E)[-_]?\d{2,6}|[A-Z]{2,5}-\d{3,6}|0x[0-9A-F]{4,8})\b"
    r"|\berror(?:\s+code)?\s*[:#]?\s*(\d{3,6})\b",
    re.IGNORECASE,
)
MONEY_RE = re.compile(
    r"(?:[$€£]\s?\d{1,3}(?:[,\d]{0,12})(?:\.\d{1,2})?)"
    r"|(?:\b\d{1,3}(?:[,\d]{0,12})(?:\.\d{1,2})?\s?(?:USD|EUR|GBP|dollars?|euros?|pounds?)\b)",
    re.IGNORECASE,
)
ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
SLASH_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
WORD_DATE_RE = re.compile(
    rf"\b(?:(\d{{1,2}})(?:st|nd|rd|th)?\s+({MONTHS})\.?(?:\s+(\d{{4}}))?"
    rf"|({MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?)\b",
    re.IGNORECASE,
)
_MONTH_NUM = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
ERROR_NOT_CODES = re.compile(r"^(?:ACC|SVC|INV)-", re.IGNORECASE)


def _valid_date(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= 2100


def _dates(text: str) -> list[str]:
    found: list[str] = []
    for m in ISO_DATE_RE.finditer(text):
        y, mo, d = (int(g) for g in m.groups())
        if _valid_date(y, mo, d):
            found.append(m.group(0))
    for m in SLASH_DATE_RE.finditer(text):
        a, b, y = (int(g) for g in m.groups())
        if _valid_date(y, b, a) or _valid_date(y, a, b):
            found.append(m.group(0))
    for m in WORD_DATE_RE.finditer(text):
        day = m.group(1) or m.group(5)
        month = (m.group(2) or m.group(4)).lower().rstrip(".")
        year = m.group(3) or m.group(6)
        # "may" alone is an ordinary word: a day number is always required.
        if _valid_date(int(year or 2000), _MONTH_NUM[month], int(day)):
            found.append(m.group(0))
    return found


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def extract_entities(text: str) -> dict[str, list[Any]]:
    """Account numbers, service ids, order numbers, error codes, phone numbers, emails,
    money amounts and dates; each pattern is validated so ordinary words never match."""
    accounts = ACCOUNT_RE.findall(text)
    services = [s.upper().replace("-", "") for s in SERVICE_RE.findall(text)]
    orders = [m.group(1) for m in ORDER_RE.finditer(text)]
    orders += [m.group(1) for m in HASH_NUMBER_RE.finditer(text)]
    errors = []
    for m in ERROR_RE.finditer(text):
        code = m.group(1) or m.group(0)
        if ERROR_NOT_CODES.match(code) or code in orders:
            continue
        errors.append(code)
    emails = EMAIL_RE.findall(text)
    # Phone numbers: digits not already claimed by another entity, not a card, not a date.
    claimed = text
    for value in [*accounts, *orders, *emails]:
        claimed = claimed.replace(value, " ")
    for m in CARD_RE.finditer(claimed):
        if luhn_ok(re.sub(r"\D", "", m.group(0))):
            claimed = claimed.replace(m.group(0), " ")
    dates = _dates(text)
    for value in dates:
        claimed = claimed.replace(value, " ")
    phones = [m.group(0).strip() for m in PHONE_RE.finditer(claimed) if phone_ok(m.group(0))]
    money = [m.group(0).strip() for m in MONEY_RE.finditer(text)]
    return {
        "account_numbers": _unique(accounts),
        "service_ids": _unique(services),
        "order_numbers": _unique(orders),
        "error_codes": _unique(errors),
        "phone_numbers": _unique(phones),
        "emails": _unique(emails),
        "money_amounts": _unique(money),
        # seed 004's name and type: the amounts as numbers
        "monetary_amounts": [v for v in map(_money_value, _unique(money)) if v is not None],
        "dates": _unique(dates),
    }


def _money_value(text: str) -> float | None:
    """``"$1,234.50"`` -> 1234.5 (the number in a MONEY_RE match; None if there is none)."""
    m = re.search(r"\d[\d,]*(?:\.\d{1,2})?", text)
    return float(m.group(0).replace(",", "")) if m else None


# --- 3. check_vip_status --------------------------------------------------------------------


def check_vip_status(customer: CustomerInfo) -> dict[str, Any]:
    """Tier and account type of the ticket's customer, where they came from (``source``)
    and, with a customer database configured, what its lookup did (``customer_db``)."""
    result: dict[str, Any] = {
        "customer_id": customer.id,
        "vip_tier": customer.vip_tier,
        "is_vip": tier_is_vip(customer.vip_tier),
        "account_type": customer.account_type,
        "source": customer.source,
    }
    if customer.lookup:
        result["customer_db"] = dict(customer.lookup)
    return result


# --- 4. check_service_status -------------------------------------------------------------------


def check_service_status(
    text: str, service_ids: list[str], category: str, services: list[ServiceInfo]
) -> dict[str, Any]:
    """Active outages and known issues on the services the ticket names (by id or keyword)
    or that relate to its category."""
    lowered = text.lower()
    wanted = {s.upper() for s in service_ids}
    matched: list[dict[str, Any]] = []
    for svc in services:
        how = ""
        if svc.service_id.upper() in wanted:
            how = "service id"
        elif any(k and re.search(rf"\b{re.escape(k.lower())}\b", lowered) for k in svc.keywords):
            how = "keyword"
        elif category and category in svc.categories:
            how = "category"
        if not how:
            continue
        matched.append(
            {
                "service_id": svc.service_id,
                "name": svc.name,
                "state": svc.state,
                "matched_by": how,
                "outages": list(svc.outages),
            }
        )
    outage_match = any(
        m["state"] != "operational" or any(not o.get("known_issue") for o in m["outages"])
        for m in matched
    )
    known_issue = any(o.get("known_issue") for m in matched for o in m["outages"])
    outages = [{"service_id": m["service_id"], **o} for m in matched for o in m["outages"]]
    return {
        "services": matched,
        "outage_match": outage_match,
        "known_issue": known_issue,
        # seed 004's names for the same findings
        "active_outages": [o for o in outages if not o.get("known_issue")],
        "known_issues": [o for o in outages if o.get("known_issue")],
        "service_health": "Outage" if outage_match else "Degraded" if known_issue else "Healthy",
    }


# --- 5. calculate_priority ---------------------------------------------------------------------

# The documented weighted score (docs/routing.md). Base 20 = "normal".
PRIORITY_BASE = 20.0
VIP_POINTS = {"platinum": 30.0, "gold": 20.0, "silver": 10.0}
ACCOUNT_POINTS = {"enterprise": 10.0, "business": 5.0}
OUTAGE_POINTS = 25.0
KNOWN_ISSUE_POINTS = 10.0
URGENCY_POINTS = 15.0
NEGATIVE_POINTS = {"very": 15.0, "somewhat": 8.0}
WAIT_POINTS_PER_HOUR, WAIT_POINTS_MAX = 2.0, 10.0
REPEAT_POINTS_EACH, REPEAT_POINTS_MAX = 5.0, 15.0
LOW_CATEGORIES = {"FEEDBACK", "NEWSLETTER"}
LOW_CATEGORY_POINTS = -10.0
THRESHOLDS = (("urgent", 70.0), ("high", 45.0), ("normal", 20.0))
URGENCY_RE = re.compile(
    r"\b(urgent(?:ly)?|asap|immediately|emergency|right now|critical|"
    r"(?:is|are|went|goes) down|outage|not working|can(?:no|')t (?:log ?in|access|pay|use)|"
    r"locked out|fraud|stolen|hacked|charged twice|double charged|lawyer|legal action)\b",
    re.IGNORECASE,
)


def sentiment(text: str) -> float:
    """VADER compound score in [-1, 1], politeness aside (``support.sentiment``)."""
    return sentiment_score(text)


def calculate_priority(
    *,
    text: str,
    vip_tier: str,
    account_type: str,
    outage_match: bool,
    known_issue: bool = False,
    waiting_minutes: float = 0.0,
    recent_tickets: int = 0,
    category: str = "",
) -> dict[str, Any]:
    """A weighted score → low / normal / high / urgent, with the score and its reasons."""
    score = PRIORITY_BASE
    reasons: list[str] = [f"base {PRIORITY_BASE:g}"]

    def add(points: float, why: str) -> None:
        nonlocal score
        if points:
            score += points
            reasons.append(f"{points:+g} {why}")

    add(VIP_POINTS.get(vip_tier, 0.0), f"{vip_tier} VIP")
    add(ACCOUNT_POINTS.get(account_type, 0.0), f"{account_type} account")
    if outage_match:
        add(OUTAGE_POINTS, "active outage on a matching service")
    elif known_issue:
        add(KNOWN_ISSUE_POINTS, "known issue on a matching service")
    words = sorted({m.group(0).lower() for m in URGENCY_RE.finditer(text)})
    if words:
        add(URGENCY_POINTS, f"urgency words: {', '.join(words)}")
    mood = sentiment(text)
    if mood <= -0.5:
        add(NEGATIVE_POINTS["very"], f"very negative sentiment ({mood:.2f})")
    elif mood <= -0.2:
        add(NEGATIVE_POINTS["somewhat"], f"negative sentiment ({mood:.2f})")
    wait = min(WAIT_POINTS_MAX, WAIT_POINTS_PER_HOUR * waiting_minutes / 60.0)
    add(round(wait, 1), f"waiting {waiting_minutes / 60:.1f} h")
    add(
        min(REPEAT_POINTS_MAX, REPEAT_POINTS_EACH * recent_tickets),
        f"{recent_tickets} recent ticket(s)",
    )
    if category in LOW_CATEGORIES:
        add(LOW_CATEGORY_POINTS, f"{category.lower()} is not time-critical")
    score = max(0.0, min(100.0, score))
    priority = next((name for name, floor in THRESHOLDS if score >= floor), "low")
    return {"priority": priority, "score": round(score, 1), "reasons": reasons, "sentiment": mood}


# --- 6. route_to_team -------------------------------------------------------------------------

BILLING_CATEGORIES = {"INVOICE", "PAYMENT", "REFUND", "CANCELLATION_FEE", "BILLING"}


def route_to_team(
    *,
    category: str,
    vip_tier: str,
    team_map: dict[str, str],
    vip_billing_team: str,
    team_names: dict[str, str],
) -> dict[str, Any]:
    """Category → team from the admin-managed map, plus rules (VIP + billing → the
    priority billing team)."""
    team = team_map.get(category, "")
    rule = f"map: {category} → {team}" if team else f"no team mapped for {category}"
    if tier_is_vip(vip_tier) and category in BILLING_CATEGORIES and vip_billing_team in team_names:
        team, rule = vip_billing_team, f"rule: {vip_tier} VIP + billing → {vip_billing_team}"
    return {"team": team, "team_name": team_names.get(team, ""), "rule": rule}


# --- 7. get_historical_context --------------------------------------------------------------------


def get_historical_context(history: list[PastTicket]) -> dict[str, Any]:
    """The customer's recent tickets, their common issues and past escalations."""
    counts: dict[str, int] = {}
    for past in history:
        if past.category:
            counts[past.category] = counts.get(past.category, 0) + 1
    recent_week = sum(1 for p in history if p.age_days <= 7)
    return {
        "recent_tickets": [
            {
                "number": p.number,
                "subject": p.subject,
                "status": p.status,
                "priority": p.priority,
                "category": p.category,
                "age_days": round(p.age_days, 1),
            }
            for p in history[:5]
        ],
        "tickets_last_7_days": recent_week,
        "open_tickets": sum(1 for p in history if p.status in ("new", "open", "pending")),
        "common_issues": [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:3]],
        "past_escalations": sum(1 for p in history if p.escalated),
        # seed 004's: any(t.get('requires_manual_review') for t in tickets)
        "escalation_history": any(p.manual_review for p in history),
    }
