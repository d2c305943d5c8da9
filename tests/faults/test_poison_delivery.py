"""A delivery that kills the worker every time it is processed (a hostile e-mail that
runs a container out of memory, a parse past the task's hard time limit) must not hold its
account's intake for ever (docs/channels.md, "A delivery that stops the worker").

Each kill rolls the drain's open batch back with nothing counted; the drain's claims,
committed before the batch, survive it: the next drains take the deliveries one at a
time, and the one the workers keep dying on is set aside as dead after
``WORKER_STOPS_LIMIT`` stops, while every other delivery is processed once."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import pytest
from django.utils import timezone

from channels_app.models import InboundEvent, InboundStatus
from channels_app.services.drain import DRAINER_LEASE, WORKER_STOPS_LIMIT
from channels_app.tests.conftest import make_account, wa_body
from support.redis_client import get_redis
from tests.faults.harness import Worker, wait_until
from tests.faults.poison_app import POISON_MARK
from tests.faults.seed import processed, sender
from tickets.models import Message

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BEFORE = 8  # deliveries queued before the poison
TOTAL = 20  # deliveries other than the poison


def _dead(worker: Worker) -> bool:
    return not worker.alive()


def test_a_delivery_that_kills_the_worker_is_set_aside_and_the_rest_are_processed(
    workers: Callable[..., Worker],
) -> None:
    account = make_account("whatsapp")
    texts = [f"message {n}" for n in range(BEFORE)]
    texts += [f"hello {POISON_MARK.decode()}"] + [f"message {n}" for n in range(BEFORE, TOTAL)]
    now = timezone.now()
    ids = []
    for n, text in enumerate(texts):  # inserted as intake stores them, no drain woken
        body = wa_body(sender(n % 5), f"wamid.p-{n:03d}", text)
        event = InboundEvent.objects.create(
            channel=account.channel,
            account=account,
            external_id=hashlib.sha256(body).hexdigest(),
            headers={"content-type": "application/json"},
            body=body,
            status=InboundStatus.RECEIVED,
            received_at=now,
        )
        ids.append(event.pk)
    poison = InboundEvent.objects.get(pk=ids[BEFORE])

    # Each worker wakes the account's drain as it connects (its start-up sweep) and dies on
    # the poison: the first in its batch of every delivery, the next ones with the poison
    # taken alone (the deliveries before it, each alone, are processed meanwhile).
    for n in range(WORKER_STOPS_LIMIT):
        worker = workers(f"doomed-{n}", app="tests.faults.poison_app", wait=False)
        wait_until(
            functools.partial(_dead, worker),
            timeout=120,
            what=f"worker doomed-{n} killed by the poison",
        )
        poison.refresh_from_db()
        assert (poison.status, poison.claims) == (InboundStatus.RECEIVED, n + 1)
        # The dead drainer's lease would keep the next worker out for its 15 s (how that
        # recovers: test_worker_killed); released here, the test's subject is the claims.
        get_redis().delete(DRAINER_LEASE.format(account_id=account.pk))

    workers("last", app="tests.faults.poison_app")
    wait_until(
        lambda: processed() == TOTAL,
        timeout=120,
        what="every other delivery processed",
    )
    poison.refresh_from_db()
    assert poison.status == InboundStatus.DEAD
    assert poison.claims == WORKER_STOPS_LIMIT
    assert f"stopped before finishing, {WORKER_STOPS_LIMIT} times" in poison.error
    assert InboundEvent.objects.filter(status=InboundStatus.PROCESSED, claims=0).count() == TOTAL
    inbound = Message.objects.filter(direction="inbound")
    assert inbound.count() == TOTAL
    assert not inbound.filter(body_text__contains=POISON_MARK.decode()).exists()
