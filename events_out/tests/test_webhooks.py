"""Outgoing webhooks end to end: a ticket change → the outbox relay → the webhook sink →
a delivery → a signed POST to a local receiver that checks the signature the way
docs/api.md tells receivers to; dead letters while the receiver fails; re-drive."""

from __future__ import annotations

import socket
import time

import pytest

from events_out.adapters.webhook import webhook_url_problem
from events_out.models import OutgoingWebhook
from events_out.services import WEBHOOK_KIND, WebhookSink
from events_out.signing import signature_header, signature_verify
from events_out.tests.conftest import SECRET, receiver_verify
from support.delivery.models import Attempt, Circuit, CircuitState, Delivery, Outcome
from support.delivery.services import deliveries_sweep, delivery_attempt, delivery_redrive
from support.models import DeliveryStatus, OutboxEvent
from tickets import services as ticket_services
from tickets.models import TicketStatus


def _webhook(url: str, event_types: list[str], **extra: object) -> OutgoingWebhook:
    return OutgoingWebhook.objects.create(
        name="CRM", url=url, event_types=event_types, secret=SECRET, **extra
    )


@pytest.mark.django_db(transaction=True)
def test_subscribed_events_are_posted_signed_once_each(customer, receiver, local_webhooks):
    hook = _webhook(receiver.url, ["ticket.created", "ticket.resolved"])
    _webhook(receiver.url, ["ticket.created", "message.created"], is_active=False)

    ticket = ticket_services.ticket_create(
        customer=customer, subject="Router down", body="No internet since 9am."
    )
    ticket_services.ticket_update(ticket=ticket, status=TicketStatus.RESOLVED)

    created = OutboxEvent.objects.get(event_type="ticket.created")
    resolved = OutboxEvent.objects.get(event_type="ticket.resolved")
    assert [r.event["event_type"] for r in receiver.requests] == [
        "ticket.created",
        "ticket.resolved",
    ]
    assert all(r.signature_ok and r.status == 200 for r in receiver.requests)
    first = receiver.requests[0]
    assert first.event == created.envelope()
    assert first.headers["Idempotency-Key"] == str(created.pk)
    assert first.headers["Support-Event-Id"] == str(created.pk)
    assert first.headers["Support-Event-Type"] == "ticket.created"
    assert first.headers["Content-Type"] == "application/json"
    assert receiver.requests[1].event["ticket_id"] == ticket.pk
    assert receiver.requests[1].event["status"] == "resolved"

    deliveries = Delivery.objects.filter(target_kind=WEBHOOK_KIND).order_by("pk")
    assert [(d.idempotency_key, d.status, d.target_key) for d in deliveries] == [
        (f"webhook:{hook.pk}:event:{created.pk}", DeliveryStatus.SUCCEEDED, f"webhook:{hook.pk}"),
        (f"webhook:{hook.pk}:event:{resolved.pk}", DeliveryStatus.SUCCEEDED, f"webhook:{hook.pk}"),
    ]
    assert [(d.subject_type, d.subject_id) for d in deliveries] == [("ticket", str(ticket.pk))] * 2


@pytest.mark.django_db(transaction=True)
def test_failing_receiver_makes_a_dead_letter_and_a_redrive_delivers_exactly_once(
    customer, receiver, local_webhooks, supervisor
):
    _webhook(receiver.url, ["ticket.created"])
    receiver.status = 503

    ticket_services.ticket_create(customer=customer, subject="Router down", body="Help")

    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.last_http_status == 503
    assert len(receiver.requests) == 3  # OUTGOING_WEBHOOKS_MAX_ATTEMPTS
    assert all(r.signature_ok and r.status == 503 for r in receiver.requests)
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {
        delivery.idempotency_key.rsplit(":", 1)[1]
    }
    assert (
        list(Attempt.objects.filter(delivery=delivery).values_list("outcome", flat=True))
        == [Outcome.RETRYABLE] * 3
    )

    receiver.status = 200  # the receiver is back
    assert delivery_redrive(delivery_ids=[delivery.pk], actor=supervisor) == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.total_attempts == 4
    assert len(receiver.accepted) == 1
    assert receiver.accepted[0].body == receiver.requests[0].body  # the same event

    # Nothing sends it again: another re-drive (not dead) and a sweep leave it alone.
    assert delivery_redrive(delivery_ids=[delivery.pk], actor=supervisor) == 0
    assert deliveries_sweep(grace_seconds=0) == 0
    assert len(receiver.requests) == 4
    assert len(receiver.accepted) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("answer", "length", "refusal"),
    [
        # no length said: read as it comes, cut off past 64 KiB
        (b"x" * (8 * 1024 * 1024), None, "over 65536 bytes"),
        # a Content-Length over the cap: refused before the body is read
        (b"ok", 50 * 1024 * 1024, f"is {50 * 1024 * 1024} bytes"),
    ],
)
def test_an_over_large_answer_is_a_permanent_failure_never_read_whole(
    customer, receiver, local_webhooks, answer, length, refusal
):
    """A receiver's URL is a supervisor's: whatever answers there must not fill a worker's
    memory. Its answer is read up to 64 KiB; past that the send is a permanent failure
    (it would answer the same again), recorded with the status, not a success."""
    _webhook(receiver.url, ["ticket.created"])
    receiver.answer, receiver.answer_length = answer, length

    ticket_services.ticket_create(customer=customer, subject="Router down", body="Help")

    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)
    assert (delivery.status, delivery.error_code, delivery.last_http_status) == (
        DeliveryStatus.DEAD,
        "answer_too_large",
        200,
    )
    assert len(receiver.requests) == 1
    assert list(Attempt.objects.filter(delivery=delivery).values_list("outcome", flat=True)) == [
        Outcome.PERMANENT
    ]
    assert refusal in delivery.last_error


@pytest.mark.django_db(transaction=True)
def test_a_receiver_refusing_our_signature_pauses_that_webhook(customer, receiver, local_webhooks):
    hook = _webhook(receiver.url, ["ticket.created"])
    receiver.secret = "a-different-secret-on-the-receiver"  # it answers 401 to our signature

    ticket_services.ticket_create(customer=customer, subject="s", body="b")

    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)
    assert [r.status for r in receiver.requests] == [401]
    assert delivery.status == DeliveryStatus.RETRYING  # waits for the secret to be fixed
    assert delivery.error_code == "http_401"
    circuit = Circuit.objects.get(target_kind=WEBHOOK_KIND, target_key=hook.target_key)
    assert circuit.state == CircuitState.OPEN


@pytest.mark.django_db(transaction=True)
def test_loopback_and_http_urls_are_refused_by_default(customer, receiver, settings):
    settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTGOING_WEBHOOKS_ALLOW_HTTP = True
    _webhook(receiver.url, ["ticket.created"])

    ticket_services.ticket_create(customer=customer, subject="s", body="b")

    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)
    assert receiver.requests == []
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.error_code == "unsafe_url"
    assert "private, loopback or reserved" in delivery.last_error


@pytest.mark.django_db(transaction=True)
def test_switched_off_webhooks_enqueue_nothing(customer, receiver, local_webhooks):
    local_webhooks.OUTGOING_WEBHOOKS_ENABLED = False
    _webhook(receiver.url, ["ticket.created"])

    ticket_services.ticket_create(customer=customer, subject="s", body="b")

    assert not Delivery.objects.filter(target_kind=WEBHOOK_KIND).exists()
    assert receiver.requests == []
    assert OutboxEvent.objects.filter(delivered_at__isnull=True).count() == 0


# --- the signature --------------------------------------------------------------------------


def test_signature_scheme_matches_the_documented_receiver_check():
    body = b'{"id":7,"event_type":"ticket.created"}'
    header = signature_header(secret=SECRET, body=body)
    assert header.startswith("t=")
    assert ",v1=" in header
    assert signature_verify(secret=SECRET, header=header, body=body)
    assert receiver_verify(SECRET, header, body)
    assert not signature_verify(secret=SECRET, header=header, body=body + b" ")
    assert not signature_verify(secret="other-secret-000000", header=header, body=body)
    assert not receiver_verify("other-secret-000000", header, body)
    old = signature_header(secret=SECRET, body=body, timestamp=int(time.time()) - 3600)
    assert not signature_verify(secret=SECRET, header=old, body=body)
    assert not receiver_verify(SECRET, old, body)
    assert not signature_verify(secret=SECRET, header="v1=abc", body=body)


# --- the URL rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/support", ""),
        ("https://93.184.215.14/hook", ""),
        ("http://hooks.example.com/support", "only https"),
        ("javascript:alert(1)", "absolute http(s) URL"),
        ("https://hooks.example.com/a b", "absolute http(s) URL"),
        ("https://user:pw@hooks.example.com/", "credentials in the URL are not accepted"),
        ("https://127.0.0.1/hook", "private, loopback or reserved"),
        ("https://localhost:8000/hook", "private, loopback or reserved"),
        ("https://api.localhost/hook", "private, loopback or reserved"),
        ("https://10.1.2.3/hook", "private, loopback or reserved"),
        ("https://169.254.169.254/latest/meta-data/", "private, loopback or reserved"),
        ("https://[::1]/hook", "private, loopback or reserved"),
        ("https://[::ffff:127.0.0.1]/hook", "private, loopback or reserved"),
    ],
)
def test_webhook_url_rules(url, problem, settings):
    settings.OUTGOING_WEBHOOKS_ALLOW_HTTP = False
    settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    found = webhook_url_problem(url, resolve=False)
    assert (problem in found) if problem else found == ""


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending(settings, monkeypatch):
    settings.OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False

    def resolve(host, port, *args, **kwargs):
        assert host == "hooks.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.8", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert webhook_url_problem("https://hooks.example.com/x", resolve=False) == ""
    assert "private" in webhook_url_problem("https://hooks.example.com/x")


@pytest.mark.django_db
def test_a_429_with_only_a_rate_limit_reset_is_retried_no_earlier_than_the_reset(
    customer, receiver, local_webhooks
):
    """A receiver behind a rate limiter answers 429 with ``X-RateLimit-Reset`` (Unix
    seconds) and no ``Retry-After``: the next attempt waits for the reset (before, it came
    after the engine's few seconds' backoff, into the same closed window)."""
    local_webhooks.DELIVERY_RETRY_AFTER_MAX_SECONDS = 900.0
    _webhook(receiver.url, ["ticket.created"])
    receiver.status = 429
    reset = int(time.time()) + 600
    receiver.answer_headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    ticket_services.ticket_create(customer=customer, subject="Router down", body="Help")
    # not committed (no relay ran): the sink is called here, the attempt made by hand
    assert WebhookSink().publish(list(OutboxEvent.objects.all())) == {}
    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)

    report = delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)

    assert report.outcome == Outcome.THROTTLED
    assert report.next_attempt_in is not None
    assert reset - time.time() <= report.next_attempt_in <= reset - time.time() + 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == (
        DeliveryStatus.RETRYING,
        1,
        429,
    )
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at.timestamp() >= reset - 1
    assert [r.status for r in receiver.requests] == [429]
