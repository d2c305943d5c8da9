"""The channel provider answers 429 with Retry-After, then 503 for a stretch, then 200.

Nothing reaches the provider before its Retry-After has passed; the target's circuit opens
(Retry-After, then each failed probe pauses it for the cool-off, during which nothing is
sent but the one probe) and closes at the first success; every reply reaches the customer
exactly once and every attempt is recorded.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from channels_app.tests.conftest import make_account
from support.delivery.models import Circuit, CircuitState, Delivery, Outcome
from support.models import DeliveryStatus
from tests.faults.harness import FakeProvider, Received, Reply, Worker, wait_until
from tests.faults.seed import whatsapp_tickets
from tickets.models import Message
from tickets.services import message_add

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

REPLIES = 10
RETRY_AFTER = 3
UNAVAILABLE = 5  # 503s after the 429
COOLOFF = 2
SLACK = 0.1  # clock granularity between the provider's and the worker's timestamps


class Provider:
    """WhatsApp's Graph API having a bad minute: request 1 is throttled, the next
    ``UNAVAILABLE`` fail, the rest succeed. Only a 200 reaches the customer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.delivered: Counter[str] = Counter()

    def respond(self, received: Received) -> Reply:
        with self.lock:
            self.count += 1
            if self.count == 1:
                return Reply(
                    429,
                    {"error": {"message": "Too many messages", "code": 130429}},
                    {"Retry-After": str(RETRY_AFTER)},
                )
            if self.count <= 1 + UNAVAILABLE:
                return Reply(503, {"error": {"message": "Service unavailable", "code": 2}})
            self.delivered[received.json()["text"]["body"]] += 1
            return Reply(200, {"messages": [{"id": f"wamid.out-{self.count}"}]})


def test_429_then_503s_then_200_backs_off_opens_and_closes_the_circuit_sends_once(
    provider: FakeProvider, workers: Callable[..., Worker], agent: Any
) -> None:
    whatsapp = Provider()
    provider.respond = whatsapp.respond
    account = make_account("whatsapp")
    tickets = whatsapp_tickets(account, REPLIES)
    workers(
        "throttled",
        concurrency=1,  # one request at a time: the gaps between them are the engine's
        META_GRAPH_API_BASE=provider.url,
        DELIVERY_CIRCUIT_FAILURES=3,
        DELIVERY_CIRCUIT_COOLOFF_SECONDS=COOLOFF,
        CHANNELS_OUTBOUND_BACKOFF_BASE=0.5,
        CHANNELS_OUTBOUND_BACKOFF_CAP=2,
        CHANNELS_OUTBOUND_MAX_ATTEMPTS=20,
        DELIVERY_SWEEP_SECONDS=1,
        DELIVERY_SWEEP_GRACE_SECONDS=1,
    )
    for n, ticket in enumerate(tickets):
        message_add(ticket=ticket, body=f"reply {n}", author_user=agent)

    states: set[str] = set()

    def all_sent() -> bool:
        states.update(Circuit.objects.values_list("state", flat=True))
        return Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == REPLIES

    wait_until(all_sent, timeout=120, what="every reply sent")

    # Every reply reached the customer exactly once.
    assert whatsapp.delivered == Counter({f"reply {n}": 1 for n in range(REPLIES)})
    assert set(
        Message.objects.filter(direction="outbound").values_list("delivery_status", flat=True)
    ) == {"sent"}

    # Backoff respected: after the 429 nothing came before Retry-After had passed; after
    # each 503 (the circuit open again) nothing came before the cool-off had passed.
    requests = provider.requests()
    assert [r.status for r in requests[: 2 + UNAVAILABLE]] == [429] + [503] * UNAVAILABLE + [200]
    for failed, following in itertools.pairwise(requests[: 2 + UNAVAILABLE]):
        pause = RETRY_AFTER if failed.status == 429 else COOLOFF
        assert following.at - failed.answered_at >= pause - SLACK, (failed.status, following)

    # The circuit opened (at the 429, and again at each failed probe: a probe is a
    # half-open circuit's one request, counted by times_opened below; polling the state can
    # miss the short half-open moments on a loaded machine) and closed.
    assert CircuitState.OPEN in states
    circuit = Circuit.objects.get(target_kind="channel_reply")
    assert (circuit.state, circuit.consecutive_failures) == (CircuitState.CLOSED, 0)
    assert circuit.times_opened == 1 + UNAVAILABLE

    # Every attempt recorded: one throttled, the 503s, one success per reply.
    outcomes = Counter(
        outcome
        for delivery in Delivery.objects.all()
        for outcome in delivery.attempt_log.values_list("outcome", flat=True)
    )
    assert outcomes == Counter(
        {Outcome.SUCCESS: REPLIES, Outcome.RETRYABLE: UNAVAILABLE, Outcome.THROTTLED: 1}
    )
    assert not Delivery.objects.filter(possible_duplicate=True).exists()
