"""The external ticketing sync through the delivery engine: seed 004's schedule (retries
after 1, 2, 4, 8, 16 s, then a dead letter), the Idempotency-Key header, the decision's
sync status, re-drive, and no lock held while the ticketing system is called."""

from __future__ import annotations

import json
import threading
import time

import pytest
import responses
from django.db import connection, connections

from routing import services
from routing.models import RoutingDecision
from support.delivery import services as engine
from support.delivery.models import Delivery
from tickets import services as ticket_services
from tickets.selectors import ticket_submitted_id

pytestmark = pytest.mark.django_db
URL = "https://tickets.example.test/api/routing"


@pytest.fixture
def sync_on(routing_on):
    routing_on.TICKETING_SYSTEM_URL = URL
    routing_on.TICKETING_SYSTEM_TOKEN = "tok"
    return routing_on


@pytest.fixture
def countdowns(monkeypatch):
    """Record the delays the engine schedules attempts with (eager Celery ignores them)."""
    from support.delivery import tasks

    seen: list[float] = []
    real = tasks.delivery_attempt_task.apply_async

    def spy(args=None, kwargs=None, countdown=None, **opts):
        seen.append(countdown)
        return real(args=args, kwargs=kwargs, **opts)

    monkeypatch.setattr(tasks.delivery_attempt_task, "apply_async", spy)
    return seen


def _route(customer, django_capture_on_commit_callbacks):
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    with django_capture_on_commit_callbacks(execute=True):
        decision = services.routing_decide(ticket_id=ticket.pk)
    decision.refresh_from_db()
    return decision


@responses.activate
def test_sync_success_sends_the_idempotency_key(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, json={"ok": True}, status=200)
    decision = _route(customer, django_capture_on_commit_callbacks)
    assert decision.sync_status == "success"
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.target_key) == ("ticketing_sync", "tickets.example.test")
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert countdowns == [0.0]
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer tok"
    assert call.request.headers["Idempotency-Key"] == f"routing-decision-{decision.pk}"
    assert delivery.idempotency_key == f"routing-decision-{decision.pk}"
    body = delivery.payload
    assert (body["assignment"]["team"], body["priority"]) == ("billing", decision.priority)
    assert body["routing"]["decision_id"] == decision.pk


@responses.activate
def test_a_decision_held_for_review_is_synced_as_not_applied(
    sync_on, teams, customer, agent, django_capture_on_commit_callbacks
):
    """Before, a decision waiting for a person was posted with its team under
    ``assignment`` like an applied one; only ``routing.requires_manual_review`` told the
    receiver not to assign it. ``applied`` says so where the assignment is."""
    responses.post(URL, json={"ok": True}, status=200)
    sync_on.ROUTING_REVIEW_THRESHOLD = 0.999  # every decision waits for a person
    decision = _route(customer, django_capture_on_commit_callbacks)
    decision.ticket.refresh_from_db()
    assert (decision.requires_manual_review, decision.applied) == (True, False)
    assert decision.ticket.team_id is None
    body = Delivery.objects.get(idempotency_key=f"routing-decision-{decision.pk}").payload
    assert body["applied"] is False
    assert body["assignment"]["team"] == "billing"  # the proposal, kept for the receiver
    assert body["routing"]["requires_manual_review"] is True
    with django_capture_on_commit_callbacks(execute=True):
        feedback = services.routing_decision_accept(decision=decision, actor=agent)
    verdict = Delivery.objects.get(idempotency_key=f"routing-verdict-{feedback.pk}").payload
    assert (verdict["applied"], verdict["assignment"]["team"]) == (True, "billing")


@responses.activate
def test_an_applied_decision_is_synced_as_applied(
    sync_on, teams, customer, django_capture_on_commit_callbacks
):
    responses.post(URL, json={"ok": True}, status=200)
    sync_on.ROUTING_REVIEW_THRESHOLD = 0.0
    decision = _route(customer, django_capture_on_commit_callbacks)
    assert (decision.requires_manual_review, decision.applied) == (False, True)
    body = Delivery.objects.get(idempotency_key=f"routing-decision-{decision.pk}").payload
    assert body["applied"] is True


@responses.activate
def test_sync_retries_1_2_4_8_16_then_dead_letter_and_redrive(
    sync_on, teams, customer, supervisor, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, body="busy", status=503)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert countdowns == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("dead", 6, 503)
    assert list(delivery.attempt_log.values_list("number", "outcome")) == [
        (n, "retryable") for n in range(1, 7)
    ]
    assert decision.sync_status == "failed"
    assert len(responses.calls) == 6
    # every retry carried the same key, so the ticketing system can drop repeats
    assert {c.request.headers["Idempotency-Key"] for c in responses.calls} == {
        f"routing-decision-{decision.pk}"
    }

    responses.replace(responses.POST, URL, json={}, status=201)
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.delivery_redrive(delivery_ids=[delivery.pk], actor=supervisor) == 1
        assert RoutingDecision.objects.get().sync_status == "pending"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert delivery.attempt_log.count() == 7
    assert RoutingDecision.objects.get().sync_status == "success"
    assert len(responses.calls) == 7


@responses.activate
def test_sync_retry_count_and_base_delay_come_from_the_settings(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    """Seed 004's MAX_RETRIES = 3 and RETRY_DELAY_BASE: 3 retries at base x 1, 2, 4."""
    sync_on.TICKETING_SYNC_MAX_RETRIES = 3
    sync_on.TICKETING_SYNC_RETRY_DELAY_BASE = 0.5
    responses.post(URL, body="busy", status=503)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert countdowns == [0.0, 0.5, 1.0, 2.0]
    assert (delivery.status, delivery.attempts) == ("dead", 4)
    assert decision.sync_status == "failed"
    assert len(responses.calls) == 4


def test_sync_delays_are_capped_at_16_times_the_base(settings):
    settings.TICKETING_SYNC_MAX_RETRIES = 7
    settings.TICKETING_SYNC_RETRY_DELAY_BASE = 2.0
    assert services.ticketing_sync_retry_delays() == (2.0, 4.0, 8.0, 16.0, 32.0, 32.0, 32.0)
    settings.TICKETING_SYNC_MAX_RETRIES = 0
    assert services.ticketing_sync_retry_delays() == ()


@responses.activate
def test_sync_4xx_is_permanent(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, json={"error": "bad"}, status=422)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("dead", 1, "http_422")
    assert countdowns == [0.0]
    assert decision.sync_status == "failed"
    assert '{"error": "bad"}' in delivery.last_error


@responses.activate
def test_sync_retry_after_is_honoured(sync_on, teams, customer, django_capture_on_commit_callbacks):
    responses.post(URL, status=429, headers={"Retry-After": "30"})
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    decision = services.routing_decide(ticket_id=ticket.pk)  # not committed: no task ran
    delivery = Delivery.objects.get()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert (report.outcome, report.next_attempt_in) == ("throttled", 30.0)  # not 1 s
    decision.refresh_from_db()
    assert decision.sync_status == "pending"


@responses.activate
def test_sync_waits_for_a_rate_limit_reset_without_retry_after(sync_on, teams, customer, settings):
    """A ticketing system's 429 with ``X-RateLimit-Reset`` (Unix seconds) and no
    ``Retry-After``: the next attempt waits for the reset, not 1 s."""
    settings.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    reset = int(time.time()) + 120
    responses.post(
        URL, status=429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    )
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    services.routing_decide(ticket_id=ticket.pk)  # not committed: no task ran
    delivery = Delivery.objects.get()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert report.outcome == "throttled"
    assert report.next_attempt_in is not None
    assert reset - time.time() <= report.next_attempt_in <= reset - time.time() + 2


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_no_lock_is_held_while_the_ticketing_system_is_called(sync_on, teams, customer):
    """While the request is in flight, another transaction can lock the delivery row and
    the decision row at once (NOWAIT): the call is made with no transaction open."""
    seen: dict[str, object] = {}

    def lock_from_elsewhere(request):
        seen["in_atomic_block"] = connection.in_atomic_block

        def other() -> None:
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute("BEGIN")
                    for table in ("delivery_delivery", "routing_routingdecision"):
                        cursor.execute(f"SELECT id FROM {table} FOR UPDATE NOWAIT")  # noqa: S608
                        seen[table] = len(cursor.fetchall())
                    cursor.execute("ROLLBACK")
            except Exception as exc:
                seen["error"] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        return (200, {}, "{}")

    responses.add_callback(responses.POST, URL, callback=lock_from_elsewhere)
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    services.routing_decide(ticket_id=ticket.pk)  # commits; the eager task sends
    assert seen == {
        "in_atomic_block": False,
        "delivery_delivery": 1,
        "routing_routingdecision": 1,
    }
    assert Delivery.objects.get().status == "succeeded"
    assert RoutingDecision.objects.get().sync_status == "success"


def _local_decision(ticket) -> RoutingDecision:
    return RoutingDecision.objects.create(
        ticket=ticket,
        priority="normal",
        confidence=0.9,
        provider="local",
        correlation_id=ticket.correlation_id,
    )


def _sync_failures() -> float:
    from routing.metrics import routing_metrics

    family = next(m for m in routing_metrics() if m.name == "support_routing_sync_failures")
    return family.samples[0].value


@responses.activate
def test_the_sync_failures_metric_counts_failed_attempts_in_the_window(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    """Seed 004's SyncFailures alarm (> 10 in 5 minutes) must see an outage as it happens:
    every failed attempt counts when it was made, whenever its decision was."""
    from datetime import timedelta

    from django.utils import timezone

    from support.delivery.models import Attempt

    responses.post(URL, body="busy", status=503)
    decision = _route(customer, django_capture_on_commit_callbacks)
    assert _sync_failures() == 6  # the first try and 5 retries, all failed
    long_ago = timezone.now() - timedelta(days=2)
    RoutingDecision.objects.filter(pk=decision.pk).update(created_at=long_ago)
    assert _sync_failures() == 6  # an old decision failing now still counts
    Attempt.objects.update(created_at=long_ago)
    assert _sync_failures() == 0  # attempts before the window do not


@responses.activate
def test_syncs_held_back_by_the_open_circuit_count_as_failures(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    """Once the breaker opens, attempts stop: counting attempts alone levelled off at the
    breaker's threshold (10) plus a probe a minute, so CriticalSyncFailures (> 20 in 5
    minutes) could never fire in an outage. Every sync requested while the circuit holds
    it back counts (seed 004's stream Lambda would have tried and failed each), and stops
    counting once it is sent."""
    from support.delivery import services as delivery_services
    from support.delivery.models import Circuit

    sync_on.DELIVERY_CIRCUIT_FAILURES = 10
    responses.post(URL, body="down", status=503)
    for _ in range(2):  # 6 + 4 failed attempts: the breaker opens on the 10th
        _route(customer, django_capture_on_commit_callbacks)
    assert Circuit.objects.get().state == "open"
    assert _sync_failures() == 10
    for _ in range(15):  # held back, no attempt made
        _route(customer, django_capture_on_commit_callbacks)
    assert Delivery.objects.filter(total_attempts=0).count() == 15
    assert _sync_failures() == 25
    assert _sync_failures() > 20  # CriticalSyncFailures (seed 004: > 20 in 5 min) can fire

    # The circuit closes (by hand here) and the held syncs go out: no longer failures.
    responses.replace(responses.POST, URL, json={}, status=200)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.circuit_close(circuit_ids=[Circuit.objects.get().pk], actor=None)
    assert _sync_failures() == 10


@responses.activate
def test_successful_syncs_are_not_failures(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    responses.post(URL, json={}, status=200)
    _route(customer, django_capture_on_commit_callbacks)
    assert _sync_failures() == 0


@pytest.mark.parametrize(
    ("channel", "sender_id", "own_ticket_id"),
    [
        ("email", "zelda.q@example.org", False),  # the channel's sender id: an address
        ("whatsapp", "447700900123", False),  # a phone number
        ("api", "CRM-8841", True),  # an API caller's own ticket id
    ],
)
def test_the_payload_refers_only_to_an_api_callers_own_ticket_id(
    teams, customer, django_user_model, channel, sender_id, own_ticket_id
):
    """docs/routing.md: the payload carries assignment, priority and routing metadata, and
    ``external_ref`` only when the ticket's ``origin_platform_id`` is an API caller's own
    ticket id; a channel's sender id (an e-mail address, a phone number) is not sent."""
    caller = django_user_model.objects.create_user("crm-sync") if own_ticket_id else None
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject="Refund",
        body="Please refund me",
        channel=channel,
        origin_platform_id=sender_id,
        origin_caller=caller,
    )
    payload = services.ticketing_sync_payload(_local_decision(ticket))
    assert payload["external_ref"] == (sender_id if own_ticket_id else "")
    if not own_ticket_id:
        assert sender_id not in str(payload)


@pytest.mark.parametrize("own_ticket_id", [True, False])
def test_the_payloads_ticket_id_is_the_ticketing_systems_own_id(
    teams, customer, django_user_model, own_ticket_id
):
    """Seed 004's "Ticketing System Update" receives ``ticket_id`` as the ticketing
    system's own id, the one ``GET /tickets/{id}`` answers (a string: the caller's id, else
    the internal id). Before, it was the internal id (an int), naming another ticket or
    none in the ticketing system; the internal id is now ``id``."""
    caller = django_user_model.objects.create_user("crm-sync") if own_ticket_id else None
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject="Refund",
        body="Please refund me",
        channel="api",
        origin_platform_id="CRM-8841" if own_ticket_id else "",
        origin_caller=caller,
    )
    payload = services.ticketing_sync_payload(_local_decision(ticket))
    expected = "CRM-8841" if own_ticket_id else str(ticket.pk)
    assert (payload["ticket_id"], payload["id"]) == (expected, ticket.pk)
    assert payload["ticket_id"] == ticket_submitted_id(ticket)  # what the seed GET answers


def test_two_callers_same_ticket_id_are_told_apart_by_submitted_by(
    teams, customer, django_user_model
):
    """A caller's ``ticket_id`` is unique per caller only: two callers' ``TKT-1001`` are
    two tickets, and the sync says whose each is (``submitted_by``, the caller's username,
    as the ``TicketReceived`` event does); a ticket no caller submitted has null."""
    payloads = []
    for username in ("crm-a", "crm-b"):
        ticket = ticket_services.ticket_create(
            customer=customer,
            subject="Refund",
            body="Please refund me",
            channel="api",
            origin_platform_id="TKT-1001",
            origin_caller=django_user_model.objects.create_user(username),
        )
        payloads.append(services.ticketing_sync_payload(_local_decision(ticket)))
    own = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    payloads.append(services.ticketing_sync_payload(_local_decision(own)))
    assert [(p["ticket_id"], p["submitted_by"]) for p in payloads] == [
        ("TKT-1001", "crm-a"),
        ("TKT-1001", "crm-b"),
        (str(own.pk), None),
    ]


def test_a_stored_payload_without_submitted_by_gets_null_only_for_an_internal_id():
    """Payloads queued before ``submitted_by``: null where ``ticket_id`` is the internal id
    (no caller submitted it); absent where it is a caller's id (the caller is unknown, and
    null would say there is none). A current payload is sent as it is."""
    queued = {"ticket_id": "12", "id": 12, "external_ref": ""}
    assert services.ticketing_sync_body(queued) == {**queued, "submitted_by": None}
    callers = {"ticket_id": "TKT-1001", "id": 12, "external_ref": "TKT-1001"}
    assert services.ticketing_sync_body(callers) == callers
    current = {**callers, "submitted_by": "crm-a"}
    assert services.ticketing_sync_body(current) == current


@responses.activate
def test_a_retry_of_a_payload_queued_before_sends_the_callers_ticket_id(
    sync_on, teams, customer, django_user_model, django_capture_on_commit_callbacks
):
    """A delivery is resent with the payload it was queued with: one queued before the
    change (``ticket_id`` the internal id, no ``id``) goes out in the current shape, so its
    retry names the caller's ticket, not the internal number."""
    responses.post(URL, json={}, status=200)
    caller = django_user_model.objects.create_user("crm-old")
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject="Refund",
        body="Please refund me",
        channel="api",
        origin_platform_id="CRM-17",
        origin_caller=caller,
    )
    old = {"ticket_id": ticket.pk, "external_ref": "CRM-17", "priority": "normal"}
    with django_capture_on_commit_callbacks(execute=True):
        services._ticketing_enqueue("routing-decision-999999", ticket.pk, old)
    [call] = responses.calls
    assert call.request.body is not None
    sent = json.loads(call.request.body)
    assert sent == {
        "ticket_id": "CRM-17",
        "id": ticket.pk,
        "external_ref": "CRM-17",
        "priority": "normal",
    }
    # a ticket without a caller's id: its internal id, as a string
    assert services.ticketing_sync_body({"ticket_id": 12, "external_ref": ""}) == {
        "ticket_id": "12",
        "id": 12,
        "external_ref": "",
        "submitted_by": None,
    }


@responses.activate
def test_a_redirect_is_a_failed_sync_not_a_success(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns
):
    """A 302 from the ticketing system (a moved endpoint, a sign-in page) is not followed:
    requests would turn the POST into a GET of the new address and its 200 was recorded as
    a successful sync that never reached the ticketing system. It is a permanent failure
    naming where it was sent, with one POST made."""
    login = "https://tickets.example.test/login"
    responses.post(URL, status=302, headers={"Location": login})
    responses.get(login, status=200, body="<html>sign in</html>")
    decision = _route(customer, django_capture_on_commit_callbacks)
    assert [(c.request.method, c.request.url) for c in responses.calls] == [("POST", URL)]
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("dead", 1, "http_302")
    assert login in delivery.last_error
    assert decision.sync_status == "failed"


@responses.activate
def test_a_refused_token_pauses_the_target_and_is_retried_after_the_pause(sync_on, teams, customer):
    """docs/routing.md: a 401 opens the ticketing system's circuit at once; the delivery
    keeps its remaining attempts for after the pause (a fixed token then goes through)."""
    from support.delivery.models import Circuit

    responses.post(URL, status=401, body="bad token")
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    services.routing_decide(ticket_id=ticket.pk)  # not committed: no task ran
    delivery = Delivery.objects.get()
    report = engine.delivery_attempt(delivery_id=delivery.pk)
    assert (report.outcome, report.status) == ("auth", "retrying")
    assert Circuit.objects.get().state == "open"
    assert RoutingDecision.objects.get().sync_status == "pending"


@pytest.mark.parametrize(
    "url", ["tickets.example.test/api/routing", "ftp://tickets.example.test/x", "https://"]
)
def test_a_malformed_ticketing_url_is_a_permanent_failure_not_retried(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns, url
):
    """A TICKETING_SYSTEM_URL requests cannot use (no scheme, another scheme, no host) is a
    configuration error: the same request would fail the same way on every retry. One
    attempt, recorded, then a dead letter saying why (it was retried 5 times as a network
    error and counted against the target's circuit)."""
    from support.delivery.models import Circuit

    sync_on.TICKETING_SYSTEM_URL = url
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("dead", 1, "invalid_url")
    assert "TICKETING_SYSTEM_URL" in delivery.last_error
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["permanent"]
    assert countdowns == [0.0]
    assert not Circuit.objects.exclude(consecutive_failures=0).exists()
    assert decision.sync_status == "failed"


@responses.activate
@pytest.mark.parametrize("verdict", ["accepted", "overridden"])
def test_a_persons_verdict_is_synced_with_the_team_and_priority_they_chose(
    sync_on, teams, customer, agent, django_capture_on_commit_callbacks, verdict
):
    """Seed 004 syncs every change of a routing decision (its Lambda reads the decisions'
    stream). Before: only the model's decision was sent, so after an agent corrected the
    team the ticketing system kept the model's."""
    responses.post(URL, json={"ok": True}, status=200)
    decision = _route(customer, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        if verdict == "accepted":
            feedback = services.routing_decision_accept(decision=decision, actor=agent)
        else:
            feedback = services.routing_decision_override(
                decision=decision,
                actor=agent,
                team=teams["orders"],
                priority="urgent",
                note="Ada's router is broken",
            )
    sync = Delivery.objects.get(idempotency_key=f"routing-verdict-{feedback.pk}")
    assert (sync.status, sync.target_kind) == ("succeeded", "ticketing_sync")
    sent = responses.calls[-1]
    assert sent.request.headers["Idempotency-Key"] == f"routing-verdict-{feedback.pk}"
    body = sync.payload
    expected = (decision.team_slug, decision.priority)
    if verdict == "overridden":
        expected = ("orders", "urgent")
    assert (body["assignment"]["team"], body["priority"]) == expected
    assert body["routing"]["decision_id"] == decision.pk
    assert body["routing"]["requires_manual_review"] is False
    assert body["review"] == {
        "verdict": verdict,
        "feedback_id": feedback.pk,
        "reviewed_at": feedback.created_at.isoformat(),
    }
    assert (
        body["updated_at"]
        > Delivery.objects.get(idempotency_key=f"routing-decision-{decision.pk}").payload[
            "updated_at"
        ]
    )
    assert "broken" not in str(body)  # the agent's note stays here
    decision.refresh_from_db()
    assert decision.sync_status == "success"


def test_no_verdict_sync_without_a_ticketing_system(
    routing_on, teams, customer, agent, django_capture_on_commit_callbacks
):
    decision = _route(customer, django_capture_on_commit_callbacks)
    services.routing_decision_accept(decision=decision, actor=agent)
    assert not Delivery.objects.exists()


@responses.activate
def test_purging_a_decision_deletes_its_verdicts_syncs_too(
    sync_on, teams, customer, agent, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    responses.post(URL, json={"ok": True}, status=200)
    decision = _route(customer, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.routing_decision_accept(decision=decision, actor=agent)
    assert Delivery.objects.count() == 2
    RoutingDecision.objects.filter(pk=decision.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.routing_decision_purge() == 1
    assert not Delivery.objects.exists()


@responses.activate
@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        # the body is read as it comes and refused past 64 KiB
        ({"body": "x" * (1024 * 1024)}, "over 65536 bytes"),
        # a Content-Length over the cap is refused before a byte of the body is read
        (
            {"body": "x" * 100, "headers": {"Content-Length": str(50 * 1024 * 1024)}},
            f"is {50 * 1024 * 1024} bytes",
        ),
    ],
)
def test_an_over_large_answer_is_a_failed_sync_never_read_whole(
    sync_on, teams, customer, django_capture_on_commit_callbacks, countdowns, answer, refusal
):
    """A ticketing system (or whatever answers at its address) that sends a huge answer is
    not read whole into a worker's memory: past ANSWER_MAX_BYTES it is a permanent failure
    (the endpoint answers that way; a retry would too), recorded with its status."""
    responses.post(URL, status=200, **answer)
    decision = _route(customer, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (
        "dead",
        1,
        "answer_too_large",
    )
    assert delivery.last_http_status == 200
    assert refusal in delivery.last_error
    assert "xxxx" not in delivery.last_error
    assert decision.sync_status == "failed"
