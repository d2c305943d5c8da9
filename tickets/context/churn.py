"""Churn risk: a transparent points score with reasons (seed 000's risk calculation).

Each rule adds points and says why; the sum (capped at 100) gives the level:
``high`` from 50, ``medium`` from 25, else ``low``. The rules, their thresholds and
points are listed in ``docs/customer-context.md``; change them here and there together.
Pure functions: the signals are gathered by ``tickets.context.selectors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HIGH_FROM = 50
MEDIUM_FROM = 25
MAX_SCORE = 100


@dataclass(frozen=True)
class ChurnSignals:
    recent_sentiment: float | None = None  # mean of the last 5 scored messages (90 days)
    previous_sentiment: float | None = None  # mean of the 5 scored messages before those
    last_sentiment: float | None = None  # the last contact's own score (None: not scored)
    contacts_30d: int = 0
    days_since_last_contact: int | None = None
    open_tickets: int = 0
    reopened_90d: int = 0
    failed_orders_90d: int = 0
    refunds_90d: int = 0
    low_csat_90d: int = 0
    days_since_last_order: int | None = None


@dataclass(frozen=True)
class ChurnReason:
    code: str
    points: int
    text: str


@dataclass(frozen=True)
class ChurnRisk:
    level: str
    score: int
    reasons: list[ChurnReason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "score": self.score,
            "reasons": [{"code": r.code, "points": r.points, "text": r.text} for r in self.reasons],
        }


def score_delta(recent: float, previous: float) -> float:
    """``recent - previous`` to the 4 places the sentiment means are rounded to, so that
    thresholds compare as written (0.4 - 0.7 is -0.3, not -0.29999999999999993)."""
    return round(recent - previous, 4)


def _level(score: int) -> str:
    if score >= HIGH_FROM:
        return "high"
    if score >= MEDIUM_FROM:
        return "medium"
    return "low"


def churn_risk(signals: ChurnSignals) -> ChurnRisk:
    """Score the signals; reasons are ordered by points, largest first."""
    s = signals
    reasons: list[ChurnReason] = []

    def add(code: str, points: int, text: str) -> None:
        if points > 0:
            reasons.append(ChurnReason(code, points, text))

    if s.recent_sentiment is not None:
        if s.recent_sentiment <= -0.5:
            add(
                "negative_sentiment",
                30,
                f"Recent messages are very negative (average {s.recent_sentiment:+.2f}).",
            )
        elif s.recent_sentiment <= -0.05:
            add(
                "negative_sentiment",
                15,
                f"Recent messages lean negative (average {s.recent_sentiment:+.2f}).",
            )
    if (
        s.recent_sentiment is not None
        and s.previous_sentiment is not None
        # Rounded like the means (4 places): in binary floating point 0.4 - 0.7 is
        # -0.29999999999999993, which missed a drop of exactly 0.3.
        and score_delta(s.recent_sentiment, s.previous_sentiment) <= -0.3
    ):
        add(
            "sentiment_falling",
            15,
            f"Sentiment is falling ({s.previous_sentiment:+.2f} → {s.recent_sentiment:+.2f}).",
        )
    if s.contacts_30d >= 6:
        add("frequent_contacts", 20, f"{s.contacts_30d} contacts in the last 30 days.")
    elif s.contacts_30d >= 3:
        add("frequent_contacts", 10, f"{s.contacts_30d} contacts in the last 30 days.")
    if (
        s.days_since_last_contact is not None
        and s.days_since_last_contact <= 7
        and s.last_sentiment is not None
        and s.last_sentiment <= -0.05
    ):
        when = "today" if s.days_since_last_contact == 0 else f"{s.days_since_last_contact} d ago"
        add("recent_unhappy_contact", 10, f"Last contact ({when}) was negative.")
    if s.open_tickets:
        add(
            "open_tickets",
            min(15, 5 * s.open_tickets),
            f"{s.open_tickets} open ticket{'s' if s.open_tickets > 1 else ''}.",
        )
    if s.reopened_90d:
        add(
            "reopened_tickets",
            min(30, 15 * s.reopened_90d),
            f"{s.reopened_90d} ticket reopening{'s' if s.reopened_90d > 1 else ''} in 90 days.",
        )
    if s.failed_orders_90d:
        add(
            "failed_orders",
            min(20, 10 * s.failed_orders_90d),
            f"{s.failed_orders_90d} failed or cancelled order"
            f"{'s' if s.failed_orders_90d > 1 else ''} in 90 days.",
        )
    if s.refunds_90d:
        add(
            "refunds",
            min(20, 10 * s.refunds_90d),
            f"{s.refunds_90d} refund{'s' if s.refunds_90d > 1 else ''} in 90 days.",
        )
    if s.low_csat_90d:
        add(
            "low_csat",
            min(30, 15 * s.low_csat_90d),
            f"{s.low_csat_90d} low satisfaction rating{'s' if s.low_csat_90d > 1 else ''} "
            "(1–2 of 5) in 90 days.",
        )
    if s.days_since_last_order is not None and s.days_since_last_order > 180:
        add("lapsed_buyer", 10, f"No order for {s.days_since_last_order} days.")

    score = min(MAX_SCORE, sum(r.points for r in reasons))
    reasons.sort(key=lambda r: -r.points)
    return ChurnRisk(level=_level(score), score=score, reasons=reasons)
