"""Redis (broker, cache, drain flags) stops in the middle of webhook intake.

Every delivery is acknowledged (stored first) or refused with a status the sender retries;
none is answered 200 and then lost; once Redis is back, everything is processed within
30 s (a worker that reconnects to the broker wakes the drains at once), with no message,
ticket or customer created twice.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.tests.conftest import TEST_SECRET, make_account, wa_body
from tests.faults.harness import PrivateRedis, Worker, wait_until
from tickets.models import Customer, Message, Ticket

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

DELIVERIES = 500
BEFORE_OUTAGE = 200
SENDERS = 50
RETRYABLE = {429, 500, 502, 503, 504}
PROCESSED_WITHIN = 30.0  # seconds after Redis is back (issue #14)


def post(client: Client, account: ChannelAccount, body: bytes) -> tuple[int, dict[str, Any]]:
    signature = "sha256=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.generic(
        "POST",
        account.webhook_path,
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature,
    )
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    return response.status_code, payload


def processed() -> int:
    return InboundEvent.objects.filter(status=InboundStatus.PROCESSED).count()


def test_redis_stopped_during_intake_loses_nothing_and_recovers_within_30_s(
    broker: PrivateRedis, workers: Callable[..., Worker]
) -> None:
    account = make_account("whatsapp")
    client = Client()
    bodies = [
        wa_body(f"3460000{n % SENDERS:04d}", f"wamid.fault-{n:04d}", f"message {n}")
        for n in range(DELIVERIES)
    ]
    workers("intake")
    answers: dict[int, tuple[int, dict[str, Any]]] = {}
    for n in range(BEFORE_OUTAGE):
        answers[n] = post(client, account, bodies[n])
    wait_until(lambda: processed() == BEFORE_OUTAGE, timeout=60, what="the first deliveries")
    # Let the drain that processed them finish (it lingers 0.5 s for more), so that what
    # arrives during the outage has no running drain to pick it up.
    time.sleep(1.5)

    broker.stop()
    for n in range(BEFORE_OUTAGE, DELIVERIES):
        answers[n] = post(client, account, bodies[n])
    stored_during_outage = InboundEvent.objects.count() - BEFORE_OUTAGE
    broker.start()
    back = time.monotonic()

    unexpected = {n: a for n, a in answers.items() if a[0] != 200 and a[0] not in RETRYABLE}
    assert unexpected == {}
    acknowledged = {n for n, (status, _) in answers.items() if status == 200}
    assert {answers[n][1].get("status") for n in acknowledged} <= {"accepted"}
    # Every 200 is a stored delivery (stored first, acknowledged after).
    assert InboundEvent.objects.filter(
        pk__in=[answers[n][1]["id"] for n in acknowledged]
    ).count() == len(acknowledged)
    # A refused delivery is sent again by the channel, as its docs promise for 5xx/429.
    for n in sorted(set(answers) - acknowledged):
        status, _ = post(client, account, bodies[n])
        assert status == 200

    wait_until(
        lambda: processed() == DELIVERIES,
        timeout=max(0.0, back + PROCESSED_WITHIN - time.monotonic()),
        what=f"all {DELIVERIES} deliveries processed within {PROCESSED_WITHIN:.0f} s of Redis "
        f"coming back ({stored_during_outage} were stored during the outage)",
    )
    assert stored_during_outage > 0
    assert InboundEvent.objects.count() == DELIVERIES
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {InboundStatus.PROCESSED}
    inbound = Message.objects.filter(direction="inbound")
    assert inbound.count() == DELIVERIES
    assert inbound.values("channel_message_id").distinct().count() == DELIVERIES
    assert Ticket.objects.count() == SENDERS
    assert Customer.objects.count() == SENDERS
