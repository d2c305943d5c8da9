"""The routing widgets' time buckets labelled as every dashboard widget labels them
(``dashboard.widgets.bucket_label``): on a fall-back night the repeated hour says which
it is, as the ticket flow's does."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from dashboard.widgets import DashboardFilters
from routing.dashboard_widgets import routing_data, routing_time_data
from routing.models import RoutingDecision
from tickets.models import Customer, Ticket

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")


def _decision(at: datetime, processing_ms: int) -> None:
    customer, _ = Customer.objects.get_or_create(email="ada@example.org", defaults={"name": "Ada"})
    ticket = Ticket.objects.create(customer=customer, subject="s", channel="email")
    decision = RoutingDecision.objects.create(
        ticket=ticket,
        correlation_id=ticket.correlation_id,
        priority="normal",
        confidence=0.9,
        provider="local",
        processing_ms=processing_ms,
    )
    RoutingDecision.objects.filter(pk=decision.pk).update(created_at=at)


def test_the_repeated_hour_of_a_fall_back_night_is_labelled_apart(settings):
    """Europe/Paris, 2026-10-25: 02:30 CEST, then 02:30 and 02:35 CET. Two rows, counted
    apart since routing/stats.py keyed them apart, were both "10-25 02:00"."""
    settings.TIME_ZONE = "Europe/Paris"
    _decision(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 100)  # 02:30 CEST
    _decision(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 300)  # 02:30 CET
    _decision(datetime(2026, 10, 25, 1, 35, tzinfo=UTC), 500)  # 02:35 CET
    _decision(datetime(2026, 10, 25, 2, 30, tzinfo=UTC), 700)  # 03:30 CET
    with timezone.override(PARIS):
        day = DashboardFilters(
            start=datetime(2026, 10, 25, tzinfo=PARIS), end=datetime(2026, 10, 26, tzinfo=PARIS)
        )
        assert day.bucket == "hour"
        quality = routing_data(day)
        times = routing_time_data(day)
        week = DashboardFilters(
            start=datetime(2026, 10, 20, tzinfo=PARIS), end=datetime(2026, 10, 27, tzinfo=PARIS)
        )
        days = routing_data(week)
    assert quality.columns[0] == times.columns[0] == "Hour"
    assert [row[:2] for row in quality.rows] == [
        ["10-25 02:00 CEST", 1],
        ["10-25 02:00 CET", 2],
        ["10-25 03:00", 1],
    ]
    assert [row[:3] for row in times.rows] == [
        ["10-25 02:00 CEST", 1, 100.0],
        ["10-25 02:00 CET", 2, 400.0],
        ["10-25 03:00", 1, 700.0],
    ]
    assert days.columns[0] == "Day"
    assert [row[:2] for row in days.rows] == [["2026-10-25", 4]]
