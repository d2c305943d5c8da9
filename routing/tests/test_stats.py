"""The routing dashboard's aggregates (``routing/stats.py``) on known decisions: counts per
bucket, the processing-time average and p95, the confidence bins with the review threshold,
decisions by team and priority, the provider error rate, and an empty window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from routing.models import RoutingDecision
from routing.stats import (
    routing_confidence_histogram,
    routing_decisions_by_priority,
    routing_decisions_by_team,
    routing_processing_times,
    routing_quality,
)
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _decision(at: datetime, *, team: Team | None = None, **fields: Any) -> RoutingDecision:
    customer, _ = Customer.objects.get_or_create(email="ada@example.org", defaults={"name": "Ada"})
    ticket = Ticket.objects.create(customer=customer, subject="s", team=team, channel="email")
    values: dict[str, Any] = {
        "priority": "normal",
        "confidence": 0.9,
        "provider": "local",
        "team": team,
        "team_slug": team.slug if team else "",
    }
    values.update(fields)
    decision = RoutingDecision.objects.create(
        ticket=ticket, correlation_id=ticket.correlation_id, **values
    )
    RoutingDecision.objects.filter(pk=decision.pk).update(created_at=at)
    return decision


@pytest.fixture
def today() -> datetime:
    """Noon today in the site's time zone (day buckets are site-local days)."""
    return timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)


def _window(today: datetime) -> dict[str, Any]:
    return {"start": today - 3 * DAY, "end": today + DAY}


def test_processing_times_average_and_p95_per_day(today):
    for ms in (100, 200, 300, 400):
        _decision(today, processing_ms=ms)
    _decision(today - DAY, processing_ms=50)
    _decision(today - 10 * DAY, processing_ms=9999)  # outside the window
    figures = routing_processing_times(**_window(today), now=today + timedelta(hours=12))
    assert figures["decisions"] == 5
    assert figures["average_ms"] == pytest.approx(210)
    assert figures["p95_ms"] == pytest.approx(380)  # percentile_cont: 300 + 0.8 × 100
    # 5 decisions over the 3.5 days from the window's start to now
    assert figures["per_hour"] == pytest.approx(5 / 84)
    days = list(figures["buckets"].values())
    assert [b["decisions"] for b in days] == [1, 4]
    assert days[0]["average_ms"] == days[0]["p95_ms"] == 50
    assert days[1]["average_ms"] == 250
    assert days[1]["p95_ms"] == pytest.approx(385)  # 300 + 0.85 × 100
    assert list(figures["buckets"])[1].date() == today.date()


def test_confidence_bins_count_every_decision_and_mark_the_threshold(today):
    for confidence in (0.05, 0.55, 0.62, 0.65, 0.95, 1.0):
        _decision(today, confidence=confidence)
    figures = routing_confidence_histogram(**_window(today), threshold=0.63)
    assert figures["decisions"] == 6
    assert figures["below_threshold"] == 3
    assert figures["average"] == pytest.approx((0.05 + 0.55 + 0.62 + 0.65 + 0.95 + 1.0) / 6)
    bins = figures["bins"]
    assert len(bins) == 10
    assert [b["decisions"] for b in bins] == [1, 0, 0, 0, 0, 1, 2, 0, 0, 2]  # 1.0 in the last
    assert bins[6] == {"low": 0.6, "high": 0.7, "decisions": 2, "below_threshold": 1}
    assert [b["below_threshold"] for b in bins] == [1, 0, 0, 0, 0, 1, 1, 0, 0, 0]


def test_confidence_threshold_defaults_to_the_review_setting(today, settings):
    settings.ROUTING_REVIEW_THRESHOLD = 0.5
    _decision(today, confidence=0.45)
    _decision(today, confidence=0.55)
    figures = routing_confidence_histogram(**_window(today), bins=4)
    assert figures["threshold"] == 0.5
    assert figures["below_threshold"] == 1
    assert [(b["low"], b["high"], b["decisions"]) for b in figures["bins"]] == [
        (0.0, 0.25, 0),
        (0.25, 0.5, 1),
        (0.5, 0.75, 1),
        (0.75, 1.0, 0),
    ]


def test_decisions_by_team_and_priority(today):
    billing = Team.objects.create(slug="billing", name="Billing")
    orders = Team.objects.create(slug="orders", name="Orders")
    for _ in range(3):
        _decision(today, team=billing, priority="high")
    _decision(today, team=orders, priority="urgent", requires_manual_review=True)
    _decision(today, team=None, team_slug="", priority="low", requires_manual_review=True)
    _decision(today, team=None, team_slug="legal", priority="high")
    assert routing_decisions_by_team(**_window(today)) == [
        {"team": "Billing", "decisions": 3, "review": 0},
        {"team": "Orders", "decisions": 1, "review": 1},
        {"team": "legal", "decisions": 1, "review": 0},  # a slug no team here has
        {"team": None, "decisions": 1, "review": 1},
    ]
    by_priority = routing_decisions_by_priority(**_window(today))
    assert [(p["priority"], p["label"], p["decisions"], p["review"]) for p in by_priority] == [
        ("low", "Low", 1, 1),
        ("normal", "Normal", 0, 0),
        ("high", "High", 4, 0),
        ("urgent", "Urgent", 1, 1),
    ]
    only_orders = routing_decisions_by_team(**_window(today), team_ids=[orders.pk])
    assert only_orders == [{"team": "Orders", "decisions": 1, "review": 1}]


def test_provider_error_rate_per_bucket(today):
    _decision(today, fallback_from="bedrock", fallback_reason="ThrottlingException")
    _decision(today)
    _decision(today - DAY)
    figures = routing_quality(**_window(today))
    assert figures["provider_errors"] == 1
    assert figures["provider_error_rate"] == pytest.approx(1 / 3)
    assert [b["provider_errors"] for b in figures["buckets"].values()] == [0, 1]
    assert [b["decisions"] for b in figures["buckets"].values()] == [1, 2]


def test_an_empty_window_has_no_figures(today):
    _decision(today - 10 * DAY, processing_ms=100, fallback_from="bedrock")
    window = _window(today)
    times = routing_processing_times(**window)
    assert times == {
        "decisions": 0,
        "average_ms": None,
        "p95_ms": None,
        "per_hour": None,
        "buckets": {},
    }
    confidence = routing_confidence_histogram(**window)
    assert confidence["decisions"] == 0
    assert confidence["average"] is None
    assert confidence["bins"] == []
    assert routing_decisions_by_team(**window) == []
    assert routing_decisions_by_priority(**window) == []
    quality = routing_quality(**window)
    assert quality["provider_errors"] == 0
    assert quality["provider_error_rate"] is None


# --- accuracy counts each reviewed decision once, by its latest verdict (review r5) ------


def test_a_decision_accepted_twice_is_one_reviewed_decision(supervisor):
    from routing import selectors, services

    decision = _decision(timezone.now(), team=Team.objects.create(slug="orders", name="Orders"))
    services.routing_decision_accept(decision=decision, actor=supervisor)
    services.routing_decision_accept(decision=decision, actor=supervisor)  # a double click
    now = timezone.now()
    quality = routing_quality(start=now - DAY, end=now + timedelta(minutes=1))
    assert selectors.routing_accuracy() == {
        "reviewed": 1,
        "overridden": 0,
        "team_accuracy": 1.0,
        "priority_accuracy": 1.0,
    }
    assert (quality["verdicts"], quality["accuracy"]) == (1, 1.0)


def test_accepted_then_overridden_counts_as_overridden_only(supervisor):
    """The later verdict replaces the earlier one: one decision whose team was wrong is
    0 % team accuracy, not 50 %; in the bucket of the earlier verdict it is gone."""
    from routing import selectors, services

    orders = Team.objects.create(slug="orders", name="Orders")
    billing = Team.objects.create(slug="billing", name="Billing")
    decision = _decision(timezone.now(), team=orders)
    accepted = services.routing_decision_accept(decision=decision, actor=supervisor)
    yesterday = timezone.now() - DAY
    type(accepted).objects.filter(pk=accepted.pk).update(created_at=yesterday)
    services.routing_decision_override(
        decision=decision, actor=supervisor, team=billing, priority="normal"
    )
    other = _decision(timezone.now(), team=orders)
    services.routing_decision_accept(decision=other, actor=supervisor)
    now = timezone.now()
    assert selectors.routing_accuracy() == {
        "reviewed": 2,
        "overridden": 1,
        "team_accuracy": 0.5,
        "priority_accuracy": 1.0,
    }
    quality = routing_quality(start=now - 3 * DAY, end=now + timedelta(minutes=1))
    assert (quality["verdicts"], quality["accuracy"]) == (2, 0.5)
    by_day = {at.date(): (c["verdicts"], c["accepted"]) for at, c in quality["buckets"].items()}
    assert by_day.get(timezone.localtime(yesterday).date(), (0, 0)) == (0, 0)
    assert by_day[timezone.localtime(now).date()] == (2, 1)


# --- merged tickets are left out, as everywhere on the dashboard (review B6) -------------


def test_decisions_on_merged_tickets_are_left_out(today):
    """docs/dashboard.md says merged tickets are left out everywhere; the routing widgets
    counted their decisions (and their cost, per "routed ticket"), with or without a
    filter."""
    alpha = Team.objects.create(slug="alpha", name="Alpha")
    kept = _decision(today, team=alpha, cost_usd=0.01)
    merged = _decision(today, team=alpha, cost_usd=0.01, processing_ms=900, confidence=0.1)
    Ticket.objects.filter(pk=merged.ticket_id).update(merged_into=kept.ticket, status="closed")
    for filters in ({}, {"team_ids": [alpha.pk]}, {"channels": ["email"]}):
        quality = routing_quality(**_window(today), **filters)
        assert (quality["decisions"], quality["tickets"]) == (1, 1), filters
        assert quality["cost_per_ticket_usd"] == pytest.approx(0.01)
        assert routing_processing_times(**_window(today), **filters)["decisions"] == 1
        assert routing_confidence_histogram(**_window(today), **filters)["decisions"] == 1
        assert routing_decisions_by_team(**_window(today), **filters) == [
            {"team": "Alpha", "decisions": 1, "review": 0}
        ]
        by_priority = routing_decisions_by_priority(**_window(today), **filters)
        assert sum(p["decisions"] for p in by_priority) == 1


# --- hour buckets across a DST change (review B4) ----------------------------------------


def test_the_repeated_hour_of_a_fall_back_night_is_two_buckets(settings):
    """02:30 CEST and 02:30 CET (Europe/Paris, 2026-10-25) were one bucket: the local
    truncation made both 02:00, which became the first 02:00."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    settings.TIME_ZONE = "Europe/Paris"
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    _decision(first, processing_ms=100)
    _decision(second, processing_ms=300)
    _decision(second + timedelta(minutes=5), processing_ms=500)
    with timezone.override(paris):
        start, end = datetime(2026, 10, 25, tzinfo=paris), datetime(2026, 10, 26, tzinfo=paris)
        quality = routing_quality(start=start, end=end, bucket="hour")
        times = routing_processing_times(start=start, end=end, bucket="hour")
        days = routing_quality(start=start, end=end, bucket="day")
    buckets = quality["buckets"]
    assert [(at.astimezone(UTC), b["decisions"]) for at, b in buckets.items()] == [
        (datetime(2026, 10, 25, 0, tzinfo=UTC), 1),
        (datetime(2026, 10, 25, 1, tzinfo=UTC), 2),
    ]
    # keyed by the local start (the widgets' labels): 02:00 twice, at +02:00 then +01:00
    assert [(at.strftime("%H:%M"), at.utcoffset()) for at in buckets] == [
        ("02:00", timedelta(hours=2)),
        ("02:00", timedelta(hours=1)),
    ]
    assert [b["average_ms"] for b in times["buckets"].values()] == [100, 400]
    assert [
        (at.strftime("%Y-%m-%d %H:%M"), b["decisions"]) for at, b in days["buckets"].items()
    ] == [("2026-10-25 00:00", 3)]
