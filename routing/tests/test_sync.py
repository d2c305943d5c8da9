from __future__ import annotations

import pytest
import responses

from routing import services
from routing.models import RoutingDecision, TicketingSync
from tickets import services as ticket_services

pytestmark = pytest.mark.django_db
# Marks removed when the outbound kinds run on support/delivery (issue #14 item 1).
TICKETING_SYNC_IN_TRANSACTION = pytest.mark.network_in_transaction_allowed(
    reason="ticketing sync moves to support/delivery (issue #14 item 1): today "
    "ticketing_sync_attempt calls out under select_for_update",
    only=("tickets.example.test",),
)
URL = "https://tickets.example.test/api/routing"


@pytest.fixture
def sync_on(routing_on):
    routing_on.TICKETING_SYSTEM_URL = URL
    routing_on.TICKETING_SYSTEM_TOKEN = "tok"
    return routing_on


@pytest.fixture
def countdowns(monkeypatch):
    """Record the retry delays the task schedules (eager Celery ignores countdown)."""
    from routing import tasks

    seen: list[float] = []
    real = tasks.ticketing_sync_task.apply_async

    def spy(args=None, kwargs=None, countdown=None, **opts):
        seen.append(countdown)
        return real(args=args, kwargs=kwargs, **opts)

    monkeypatch.setattr(tasks.ticketing_sync_task, "apply_async", spy)
    return seen


def _route(customer, django_capture_on_commit_callbacks):
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    with django_capture_on_commit_callbacks(execute=True):
        decision = services.routing_decide(ticket_id=ticket.pk)
    decision.refresh_from_db()
    return decision


@TICKETING_SYNC_IN_TRANSACTION
@responses.activate
def test_sync_success(sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns):
    responses.post(URL, json={"ok": True}, status=200)
    decision = _route(customer, django_capture_on_commit_callbacks)
    assert decision.sync_status == "success"
    delivery = TicketingSync.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert countdowns == [0.0]
    call = responses.calls[0].request
    assert call.headers["Authorization"] == "Bearer tok"
    assert call.headers["Idempotency-Key"] == f"routing-decision-{decision.pk}"
    body = delivery.payload
    assert (body["assignment"]["team"], body["priority"]) == ("billing", decision.priority)
    assert body["routing"]["decision_id"] == decision.pk


@TICKETING_SYNC_IN_TRANSACTION
@responses.activate
def test_sync_retries_1_2_4_8_16_then_dead_letter_and_redrive(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, body="busy", status=503)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = TicketingSync.objects.get()
    assert countdowns == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("dead", 6, 503)
    assert list(delivery.attempts_log.values_list("number", "outcome")) == [
        (n, "retryable") for n in range(1, 7)
    ]
    assert decision.sync_status == "failed"
    assert len(responses.calls) == 6

    responses.replace(responses.POST, URL, json={}, status=201)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.ticketing_sync_redrive(delivery_ids=[delivery.pk]) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert delivery.attempts_log.count() == 7
    assert RoutingDecision.objects.get().sync_status == "success"


@TICKETING_SYNC_IN_TRANSACTION
@responses.activate
def test_sync_4xx_is_permanent(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, json={"error": "bad"}, status=422)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = TicketingSync.objects.get()
    assert (delivery.status, delivery.attempts) == ("dead", 1)
    assert countdowns == [0.0]
    assert decision.sync_status == "failed"
