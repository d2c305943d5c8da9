"""What needs a person, in ``/metrics`` (what Prometheus and the alarm rules read, and an
alarm rule accepts only names a source exports) as on ``/health`` (counts only), from the
same selectors: outbox events the relay gave up on, targets paused by their circuit,
deliveries that may have reached their recipient twice.

Before 2026-12-07 an outbox event given up after ``OUTBOX_MAX_ATTEMPTS`` was on neither
(``support_outbox_lag_seconds`` leaves failed events out), and paused circuits and possible
duplicates were on ``/health`` only, so no alarm rule could watch them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.selectors import metric_names_known
from support import health
from support.delivery.models import Circuit, CircuitState, Delivery
from support.models import OutboxEvent

pytestmark = pytest.mark.django_db

TOKEN = "levels-test-token-0123456789"


@pytest.fixture(autouse=True)
def _metrics_on(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture(autouse=True)
def _fresh_celery_cache() -> Any:
    health._celery_cache.update(at=0.0, result=None)
    yield
    health._celery_cache.update(at=0.0, result=None)


def scrape(client: Client) -> dict[str, float]:
    """{sample name: value} of the unlabelled samples (the levels here have no labels)."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if not sample.labels
    }


def _event(**fields: Any) -> OutboxEvent:
    return OutboxEvent.objects.create(
        event_type="ticket.updated", aggregate_type="ticket", aggregate_id="1", **fields
    )


def test_outbox_events_given_up_are_a_level_in_metrics_and_on_health(client: Client) -> None:
    now = timezone.now()
    _event(failed_at=now, attempts=10)
    old = _event(failed_at=now - timedelta(days=60), attempts=10)  # however old
    OutboxEvent.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=60))
    _event(attempts=3)  # pending: the relay retries it (the lag's)
    _event(delivered_at=now, attempts=1)  # delivered
    samples = scrape(client)
    assert samples["support_outbox_failed"] == 2
    assert samples["support_outbox_lag_seconds"] < 60  # the pending one only, as before
    deliveries = client.get("/health").json()["deliveries"]
    assert deliveries == {
        "dead_letters": 0,
        "circuits_open": 0,
        "possible_duplicates": 0,
        "outbox_failed": 2,
    }

    OutboxEvent.objects.filter(failed_at__isnull=False).update(failed_at=None, attempts=0)
    assert scrape(client)["support_outbox_failed"] == 0  # re-driven: the level falls


def test_paused_circuits_and_possible_duplicates_are_gauges_as_on_health(
    client: Client,
) -> None:
    now = timezone.now()
    later, earlier = now + timedelta(minutes=1), now - timedelta(minutes=1)
    Circuit.objects.create(
        target_kind="channel_reply", target_key="a", state="open", open_until=later
    )
    Circuit.objects.create(target_kind="webhook_event", target_key="b", state="half_open")
    # its pause is over (the next claim probes): not paused
    Circuit.objects.create(
        target_kind="alert_slack", target_key="c", state="open", open_until=earlier
    )
    Circuit.objects.create(target_kind="alert_email", target_key="d", state=CircuitState.CLOSED)
    for key, duplicate in [("x", True), ("y", True), ("z", False)]:
        Delivery.objects.create(
            target_kind="channel_reply",
            idempotency_key=key,
            status="succeeded",
            possible_duplicate=duplicate,
        )
    samples = scrape(client)
    assert samples["support_delivery_circuits_open"] == 2
    assert samples["support_deliveries_possible_duplicates"] == 2
    deliveries = client.get("/health").json()["deliveries"]
    assert (deliveries["circuits_open"], deliveries["possible_duplicates"]) == (2, 2)


def test_the_levels_are_always_sampled_and_alarm_rules_may_name_them(client: Client) -> None:
    """0 when nothing waits (a level, not "no data"), and known to the alarm rules' form."""
    samples = scrape(client)
    for name in (
        "support_outbox_failed",
        "support_delivery_circuits_open",
        "support_deliveries_possible_duplicates",
    ):
        assert samples[name] == 0, name
    assert {
        "support_outbox_failed",
        "support_delivery_circuits_open",
        "support_deliveries_possible_duplicates",
        "support_beat_last_run_age_seconds",
    } <= metric_names_known()


def test_the_outbox_failed_count_can_use_its_partial_index() -> None:
    """The outbox keeps every delivered event ``OUTBOX_RETENTION_DAYS``, and ``/health``
    (public) counts the failed ones on every call: a partial index holds only those."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT count(*) FROM support_outboxevent WHERE failed_at IS NOT NULL"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "outbox_failed_idx" in plan, plan
