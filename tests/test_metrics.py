"""GET /metrics: Prometheus text computed from the database and Redis at scrape time,
behind a bearer token (``METRICS_TOKEN``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from calls.models import Call, CallAnalytics, CallEvent, EventStatus, PipelineStatus
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback, SyncStatus
from support.delivery.models import Attempt, Delivery, Outcome
from support.fallback import provider_failure
from support.models import OutboxEvent
from support.redis_client import get_redis
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789"

#: Seed 004 (routing) and seed 003 (call pipeline) metrics, and the platform's own.
SEED_004 = {
    "support_routing_tickets_processed",  # TicketsProcessed
    "support_routing_processing_seconds",  # ProcessingTime (histogram)
    "support_routing_confidence",  # ConfidenceScore (histogram)
    "support_routing_confidence_average",  # ConfidenceScore (average)
    "support_routing_manual_review_rate",  # ManualReviewRate
    "support_routing_accuracy",  # RoutingAccuracy
    "support_routing_sync_failures",  # TicketingSystemSyncFailures
    "support_routing_provider_errors",  # BedrockAPIErrors (provider="bedrock")
    "support_routing_tokens",
    "support_routing_tokens_per_ticket",
    "support_routing_cost_usd",
    "support_routing_cost_per_ticket_usd",
}
SEED_003 = {
    "support_call_events",
    "support_call_events_failed",  # the dead-letter queue's equivalent
    "support_calls",
    "support_call_analytics",
    "support_call_bedrock_failures",  # Bedrock failures
}
PLATFORM = {
    "support_kb_sources_failing",  # KB sources whose last sync or ingest failed
    "support_inbound_dead_letters",  # inbound dead letters and quarantined e-mail waiting now
    # beside ManualReviewRate: the share unlike any trained intent (routers with a detector;
    # the demo's shipped default has none, so it is 0 after a demo load)
    "support_routing_out_of_scope_rate",
    "support_routing_unrouted_tickets",  # the routing sweep's safety net (docs/routing.md)
    "support_webhook_events",
    "support_inbound_processing_lag_seconds",
    "support_outbox_lag_seconds",
    "support_outbox_failed",  # events the relay gave up on (docs/operations.md)
    "support_context_dead_letters",  # customer-context work that gave up (by kind)
    "support_beat_last_run_age_seconds",  # no sample until beat has run (named anyway)
    "support_delivery_circuits_open",  # /health's deliveries.circuits_open
    "support_deliveries_possible_duplicates",  # /health's deliveries.possible_duplicates
    "support_celery_queue_length",
    "support_deliveries",
    "support_deliveries_dead_letters",
    "support_deliveries_overdue_seconds",
    "support_provider_programming_errors",
    "support_media_downloads",  # channels' files not downloaded (docs/operations.md)
    "support_kb_object_events_failed",  # KB S3 events waiting for a re-drive
    "support_metrics_source_up",
    "support_metrics_scrape_seconds",
}


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def queued() -> Iterator[None]:
    """Three tasks waiting in the default queue, one in the realtime queue."""
    client = get_redis()
    client.delete("celery", "realtime")
    client.rpush("celery", "a", "b", "c")
    client.rpush("realtime", "d")
    yield
    client.delete("celery", "realtime")


def scrape(client: Client, token: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family name: {sorted labels (with le for buckets, suffixed samples kept): value}}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            key = (("__name__", sample.name), *sorted(sample.labels.items()))
            samples[key] = sample.value
    return families


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    key = (("__name__", sample or family), *sorted(labels.items()))
    return families[family][key]


def feed(customer: Any) -> None:
    """A few of everything the metrics count."""
    now = timezone.now()
    tickets = [ticket_create(customer=customer, subject=f"T{i}", body="?") for i in range(4)]
    decisions = []
    for i, ticket in enumerate(tickets):
        decisions.append(
            RoutingDecision.objects.create(
                ticket=ticket,
                attempt_key="metrics",
                priority="normal",
                confidence=[0.95, 0.85, 0.55, 0.35][i],
                provider="bedrock" if i < 2 else "local",
                processing_ms=[40.0, 800.0, 3000.0, 12.0][i],
                requires_manual_review=i >= 2,
                out_of_scope=[None, False, False, True][i],  # None: no detector
                fallback_from="bedrock" if i == 3 else "",
                tokens_in=100 * (i + 1),
                tokens_out=10 * (i + 1),
                cost_usd=Decimal("0.002"),
                sync_status=SyncStatus.FAILED if i == 0 else SyncStatus.SUCCESS,
                correlation_id=uuid.uuid4(),
            )
        )
    for decision, (verdict, team_ok) in zip(
        decisions,
        [(FeedbackVerdict.ACCEPTED, True), (FeedbackVerdict.OVERRIDDEN, False)],
        strict=False,
    ):
        RoutingFeedback.objects.create(
            decision=decision,
            verdict=verdict,
            team_correct=team_ok,
            priority_correct=True,
        )

    account = make_account("whatsapp")
    for key, status in [
        ("w1", InboundStatus.PROCESSED),
        ("w2", InboundStatus.PROCESSED),
        ("w3", InboundStatus.MALFORMED),
        ("w4", InboundStatus.RECEIVED),
        ("w5", InboundStatus.IGNORED),  # an unknown event type
        ("w6", InboundStatus.CLOSED),  # a supervisor closed it unprocessed: not "ignored"
    ]:
        InboundEvent.objects.create(
            channel="whatsapp", account=account, external_id=key, body=b"{}", status=status
        )
    InboundEvent.objects.filter(external_id="w4").update(received_at=now - timedelta(minutes=5))
    # The tickets' own events wait in the outbox (no relay runs here): two minutes old.
    assert OutboxEvent.objects.filter(delivered_at__isnull=True).exists()
    OutboxEvent.objects.update(created_at=now - timedelta(minutes=2))

    Delivery.objects.create(target_kind="channel_reply", idempotency_key="d1", status="succeeded")
    Delivery.objects.create(target_kind="channel_reply", idempotency_key="d2", status="dead")
    sync = Delivery.objects.create(
        target_kind="ticketing_sync",
        idempotency_key="d3",
        status="retrying",
        next_attempt_at=now - timedelta(minutes=1),
    )
    # Ticketing-sync attempts: two failed in the window, one long before it, one succeeded;
    # a failed attempt of another kind.
    Attempt.objects.create(delivery=sync, number=1, outcome=Outcome.RETRYABLE)
    Attempt.objects.create(delivery=sync, number=4, outcome=Outcome.LOST)
    old = Attempt.objects.create(delivery=sync, number=2, outcome=Outcome.RETRYABLE)
    Attempt.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    Attempt.objects.create(delivery=sync, number=3, outcome=Outcome.SUCCESS)
    reply = Delivery.objects.get(idempotency_key="d2")
    Attempt.objects.create(delivery=reply, number=1, outcome=Outcome.PERMANENT)

    CallEvent.objects.create(source="ctr", external_id="e1", status=EventStatus.PROCESSED)
    CallEvent.objects.create(source="recording", external_id="e2", status=EventStatus.FAILED)
    ok = Call.objects.create(
        # Started long ago (a replayed CTR): counted when recorded, not when it started.
        contact_id="c1",
        initiated_at=now - timedelta(days=3),
        pipeline_status=PipelineStatus.ANALYSED,
    )
    Call.objects.create(contact_id="c2", initiated_at=now, pipeline_status=PipelineStatus.FAILED)
    CallAnalytics.objects.create(
        call=ok, produced_by="data_automation", provider="bedrock", bedrock_status="Success"
    )


def test_no_token_configured_means_no_endpoint(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_a_valid_bearer_token_is_required(client: Client, token: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"support_" not in response.content


def test_a_signed_in_supervisor_without_the_token_is_refused(
    client: Client, token: str, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(user)
    assert client.get("/metrics").status_code == 401


def test_only_get(client: Client, token: str) -> None:
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405


def test_every_metric_is_named_on_an_empty_install(client: Client, token: str) -> None:
    families = scrape(client, token)
    assert set(families) >= SEED_004 | SEED_003 | PLATFORM
    for source in (
        "beat",
        "calls",
        "celery_queues",
        "channels",
        "deliveries",
        "outbox",
        "process",
        "routing",
    ):
        assert value(families, "support_metrics_source_up", source=source) == 1


def test_values_after_feeding_data(client: Client, token: str, customer: Any, queued: None) -> None:
    feed(customer)
    with pytest.raises(KeyError):
        provider_failure(KeyError("bug"), component="routing", provider="bedrock")
    families = scrape(client, token)
    assert set(families) >= SEED_004 | SEED_003 | PLATFORM

    # Seed 004: every metric non-zero, with exact values.
    assert value(families, "support_routing_tickets_processed", provider="bedrock") == 2
    assert value(families, "support_routing_tickets_processed", provider="local") == 2
    seconds = "support_routing_processing_seconds"
    assert value(families, seconds, f"{seconds}_count") == 4
    assert value(families, seconds, f"{seconds}_sum") == pytest.approx(3.852)
    assert value(families, seconds, f"{seconds}_bucket", le="0.05") == 2
    assert value(families, seconds, f"{seconds}_bucket", le="1.0") == 3
    assert value(families, seconds, f"{seconds}_bucket", le="5.0") == 4
    assert value(families, seconds, f"{seconds}_bucket", le="+Inf") == 4
    confidence = "support_routing_confidence"
    assert value(families, confidence, f"{confidence}_bucket", le="0.4") == 1
    assert value(families, confidence, f"{confidence}_bucket", le="0.9") == 3
    assert value(families, confidence, f"{confidence}_sum") == pytest.approx(2.7)
    assert value(families, "support_routing_confidence_average") == pytest.approx(0.675)
    assert value(families, "support_routing_manual_review_rate") == 0.5
    assert value(families, "support_routing_out_of_scope_rate") == pytest.approx(1 / 3)
    assert value(families, "support_routing_accuracy", dimension="overall") == 0.5
    assert value(families, "support_routing_accuracy", dimension="team") == 0.5
    assert value(families, "support_routing_accuracy", dimension="priority") == 1.0
    assert value(families, "support_routing_sync_failures") == 2  # failed attempts
    assert value(families, "support_routing_provider_errors", provider="bedrock") == 1
    assert value(families, "support_routing_tokens", direction="in") == 1000
    assert value(families, "support_routing_tokens", direction="out") == 100
    assert value(families, "support_routing_tokens_per_ticket") == 275
    assert value(families, "support_routing_cost_usd") == pytest.approx(0.008)
    assert value(families, "support_routing_cost_per_ticket_usd") == pytest.approx(0.002)

    # Seed 003.
    assert value(families, "support_call_events", source="ctr", status="processed") == 1
    assert value(families, "support_call_events", source="recording", status="failed") == 1
    assert value(families, "support_call_events_failed") == 1
    assert value(families, "support_calls", status="failed") == 1
    assert value(families, "support_calls", status="analysed") == 1
    assert (
        value(
            families,
            "support_call_analytics",
            produced_by="data_automation",
            provider="bedrock",
            bedrock_status="Success",
        )
        == 1
    )

    # Intake, lags, queues, deliveries, this process's programming errors.
    assert value(families, "support_webhook_events", channel="whatsapp", outcome="processed") == 2
    assert value(families, "support_webhook_events", channel="whatsapp", outcome="malformed") == 1
    assert value(families, "support_webhook_events", channel="whatsapp", outcome="received") == 1
    assert value(families, "support_webhook_events", channel="whatsapp", outcome="ignored") == 1
    assert value(families, "support_webhook_events", channel="whatsapp", outcome="closed") == 1
    assert 300 <= value(families, "support_inbound_processing_lag_seconds") < 3600
    assert 120 <= value(families, "support_outbox_lag_seconds") < 3600
    assert value(families, "support_celery_queue_length", queue="celery") == 3
    assert value(families, "support_celery_queue_length", queue="realtime") == 1
    assert value(families, "support_deliveries", kind="channel_reply", status="succeeded") == 1
    assert value(families, "support_deliveries", kind="channel_reply", status="dead") == 1
    assert value(families, "support_deliveries", kind="ticketing_sync", status="retrying") == 1
    assert value(families, "support_deliveries_dead_letters", kind="channel_reply") == 1
    assert value(families, "support_deliveries_overdue_seconds") >= 60
    assert value(families, "support_provider_programming_errors", component="routing") >= 1


def test_the_window_leaves_old_rows_out(
    client: Client, token: str, customer: Any, settings: Any
) -> None:
    feed(customer)
    settings.METRICS_WINDOW_SECONDS = 3600
    RoutingDecision.objects.update(created_at=timezone.now() - timedelta(hours=2))
    families = scrape(client, token)
    assert families["support_routing_tickets_processed"] == {}
    # No decision in the window: no review rate, no out-of-scope share (no sample; 0 would
    # read as "none needed review")
    assert families["support_routing_manual_review_rate"] == {}
    assert families["support_routing_out_of_scope_rate"] == {}
    seconds = "support_routing_processing_seconds"
    assert value(families, seconds, f"{seconds}_count") == 0


def test_media_downloads_and_kb_events_failed(
    client: Client, token: str, customer: Any, settings: Any
) -> None:
    """What the alert rules fire on: channels' files that could not be downloaded (those
    received in the window) or are still to come (now), and KB S3 events whose attempts
    are spent (now, however old)."""
    from knowledge.models import ObjectEvent
    from tickets.models import Attachment, Message

    families = scrape(client, token)
    # exported at 0 on an empty install (an alert rule's name is known before anything fails)
    assert value(families, "support_media_downloads", status="failed") == 0
    assert value(families, "support_media_downloads", status="pending") == 0
    assert value(families, "support_kb_object_events_failed") == 0

    settings.METRICS_WINDOW_SECONDS = 3600
    ticket = ticket_create(customer=customer, subject="Files", body="?")
    message = Message.objects.get(ticket=ticket)
    old = timezone.now() - timedelta(hours=2)
    for status, age in [
        ("failed", None),
        ("failed", None),
        ("failed", old),  # out of the window
        ("pending", None),
        ("pending", old),  # pending: counted whenever it came
        ("stored", None),
    ]:
        attachment = Attachment.objects.create(
            message=message, filename="f.jpg", download_status=status
        )
        if age:
            Attachment.objects.filter(pk=attachment.pk).update(created_at=age)
    now = timezone.now()
    for key, failed_at, processed_at in [
        ("a", now - timedelta(days=30), None),  # failed long ago: still waiting
        ("b", now, None),
        ("c", None, None),  # not processed yet, not failed
        ("d", now, now),  # re-driven and applied
    ]:
        ObjectEvent.objects.create(
            event_key=key,
            via="http",
            bucket="kb",
            key=f"{key}.md",
            action="upsert",
            failed_at=failed_at,
            processed_at=processed_at,
        )
    families = scrape(client, token)
    assert value(families, "support_media_downloads", status="failed") == 2
    assert value(families, "support_media_downloads", status="pending") == 2
    assert value(families, "support_kb_object_events_failed") == 2  # a and b

    # an alarm rule may name them (the admin form refuses names no source exports), and
    # evaluated over its own window the failed downloads follow that window
    from alerts.selectors import metric_names_known
    from support.metrics import metrics_collect

    assert {"support_media_downloads", "support_kb_object_events_failed"} <= (metric_names_known())
    five_minutes = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics_collect(window_seconds=300)
        for sample in family.samples
    }
    assert five_minutes[("support_media_downloads", (("status", "failed"),))] == 2
    Attachment.objects.filter(download_status="failed").update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    five_minutes = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics_collect(window_seconds=300)
        for sample in family.samples
    }
    assert five_minutes[("support_media_downloads", (("status", "failed"),))] == 0
    assert value(families, "support_metrics_source_up", source="media") == 1
    assert value(families, "support_metrics_source_up", source="knowledge_events") == 1


def test_a_failing_source_is_reported_and_the_rest_still_answer(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    def down() -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr("support.metrics.get_redis", down)
    families = scrape(client, token)
    assert value(families, "support_metrics_source_up", source="celery_queues") == 0
    assert value(families, "support_metrics_source_up", source="routing") == 1
    assert "support_celery_queue_length" not in families
    # the KB search counts live in Redis; the failed S3 events in PostgreSQL: still there
    monkeypatch.setattr("support.window_counts.get_redis", down)
    families = scrape(client, token)
    assert value(families, "support_metrics_source_up", source="knowledge") == 0
    assert value(families, "support_metrics_source_up", source="knowledge_events") == 1
    assert value(families, "support_kb_object_events_failed") == 0


def nonzero(samples: dict[tuple[tuple[str, str], ...], float]) -> bool:
    """Some sample of the family is non-zero (a histogram: some observation counted)."""
    return any(v > 0 for key, v in samples.items() if not dict(key).get("le"))


@pytest.fixture
def no_workers() -> Iterator[None]:
    """As in `make run` before its workers start: tasks are queued in Redis, not run."""
    from support.celery import app

    client = get_redis()
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True
    client.delete("celery", "realtime")


@pytest.mark.django_db(transaction=True)
def test_every_seed_metric_has_a_value_after_a_demo_load(
    client: Client, token: str, no_workers: None
) -> None:
    """What `make run` loads (load_demo with the apps' demo steps, load_demo_calls) makes
    every seed 003 / 004 metric non-zero on the first scrape, before any worker ran."""
    from django.core.management import call_command

    call_command("load_demo", password="demo-password-123")
    call_command("load_demo_calls")
    families = scrape(client, token)
    zero = sorted(name for name in SEED_004 | SEED_003 if not nonzero(families[name]))
    assert zero == []
    assert value(families, "support_routing_provider_errors", provider="bedrock") > 0
    # A second load adds nothing (idempotent).
    before = RoutingDecision.objects.count(), RoutingFeedback.objects.count()
    call_command("load_demo", password="demo-password-123")
    assert (RoutingDecision.objects.count(), RoutingFeedback.objects.count()) == before


def test_averages_and_ratios_without_samples_are_left_out(client: Client, token: str) -> None:
    """Review r5: an idle window published average confidence 0 and accuracy 0 (and 0 %
    review), which an alarm or a chart reads as "every decision had confidence 0 / was
    wrong". Without a denominator the family has no sample; counts stay 0."""
    families = scrape(client, token)
    for name in (
        "support_routing_confidence_average",
        "support_routing_manual_review_rate",
        "support_routing_out_of_scope_rate",
        "support_routing_accuracy",
        "support_routing_cost_per_ticket_usd",
        "support_routing_tokens_per_ticket",
    ):
        assert families[name] == {}, name
    assert value(families, "support_routing_verdicts") == 0
    assert value(families, "support_routing_cost_usd") == 0


def test_accuracy_counts_each_decision_by_its_latest_verdict(
    client: Client, token: str, customer: Any
) -> None:
    ticket = ticket_create(customer=customer, subject="T", body="?")
    decision = RoutingDecision.objects.create(
        ticket=ticket,
        correlation_id=ticket.correlation_id,
        attempt_key="metrics",
        priority="normal",
        confidence=0.9,
        provider="local",
    )
    for verdict, team_ok in ((FeedbackVerdict.ACCEPTED, True), (FeedbackVerdict.OVERRIDDEN, False)):
        RoutingFeedback.objects.create(
            decision=decision, verdict=verdict, team_correct=team_ok, priority_correct=True
        )
    families = scrape(client, token)
    assert value(families, "support_routing_verdicts") == 1
    assert value(families, "support_routing_accuracy", dimension="overall") == 0
    assert value(families, "support_routing_accuracy", dimension="team") == 0
    assert value(families, "support_routing_accuracy", dimension="priority") == 1
