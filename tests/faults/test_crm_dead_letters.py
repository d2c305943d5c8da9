"""The CRM (Salesforce) answers 503 for the whole retry window.

Every case becomes a dead letter after its last attempt, with each attempt recorded and
nothing created in the CRM; after the CRM recovers, a supervisor's bulk re-drive delivers
each case exactly once (one record created per case, none twice), audited; a second
re-drive finds nothing to do.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest

from calls.services import SALESFORCE_KIND
from support.delivery.models import Delivery, Outcome
from support.delivery.services import delivery_enqueue, delivery_redrive
from support.models import AuditLog, DeliveryStatus
from tests.faults.harness import FakeProvider, Received, Reply, Worker, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

CASES = 8
MAX_ATTEMPTS = 3
EXTERNAL_ID_FIELD = "Support_Desk_Id__c"


class Crm:
    """Salesforce's token endpoint and sObject upsert by External ID
    (``PATCH /services/data/<v>/sobjects/Case/<field>/<value>``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.up = False
        self.lock = threading.Lock()
        self.records: dict[str, str] = {}  # external id -> record id
        self.created: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()

    def respond(self, received: Received) -> Reply:
        if received.path.endswith("/services/oauth2/token"):
            return Reply(200, {"access_token": "token", "instance_url": self.url})
        if not self.up:
            return Reply(
                503,
                [{"errorCode": "SERVER_UNAVAILABLE", "message": "Down for maintenance"}],
            )
        external_id = unquote(received.path.rsplit("/", 1)[1])
        with self.lock:
            if external_id in self.records:
                self.updated[external_id] += 1
                return Reply(200, {"id": self.records[external_id], "created": False})
            record_id = f"500{len(self.records):015d}"
            self.records[external_id] = record_id
            self.created[external_id] += 1
            return Reply(201, {"id": record_id, "success": True, "created": True})


def test_crm_down_for_the_whole_retry_window_then_redrive_delivers_each_once(
    provider: FakeProvider, workers: Callable[..., Worker], supervisor: Any
) -> None:
    crm = Crm(provider.url)
    provider.respond = crm.respond
    workers(
        "crm",
        SALESFORCE_ENABLED="true",
        SALESFORCE_LOGIN_URL=provider.url,
        SALESFORCE_CLIENT_ID="client",
        SALESFORCE_CLIENT_SECRET="secret",
        SALESFORCE_EXTERNAL_ID_FIELD=EXTERNAL_ID_FIELD,
        SALESFORCE_MAX_ATTEMPTS=MAX_ATTEMPTS,
        DELIVERY_CIRCUIT_FAILURES=0,  # the schedule's window, not the breaker, is tested
        DELIVERY_SWEEP_SECONDS=1,
        DELIVERY_SWEEP_GRACE_SECONDS=1,
    )
    keys = [f"case:fault-{n}" for n in range(CASES)]
    for n, key in enumerate(keys):
        delivery_enqueue(
            kind=SALESFORCE_KIND,
            idempotency_key=key,
            target_key="crm",
            subject_type="call",
            subject_id=n,
            payload={
                "sobject": "Case",
                "fields": {"Subject": f"Phone call {n}", "Origin": "Phone"},
                "call_id": None,
                "escalation_id": None,
            },
        )

    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DEAD).count() == CASES,
        timeout=120,
        what="every case a dead letter",
    )
    assert crm.records == {}
    for delivery in Delivery.objects.all():
        attempts = [
            tuple(row) for row in delivery.attempt_log.values_list("outcome", "http_status")
        ]
        assert attempts == [(Outcome.RETRYABLE, 503)] * MAX_ATTEMPTS
        assert "SERVER_UNAVAILABLE" in delivery.last_error

    crm.up = True
    ids = list(Delivery.objects.values_list("pk", flat=True))
    assert delivery_redrive(delivery_ids=ids, actor=supervisor) == CASES
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == CASES,
        timeout=60,
        what="every case delivered after the re-drive",
    )

    assert crm.created == Counter(dict.fromkeys(keys, 1))
    assert crm.updated == Counter()
    for delivery in Delivery.objects.all():
        outcomes = list(delivery.attempt_log.values_list("outcome", flat=True))
        assert outcomes == [Outcome.RETRYABLE] * MAX_ATTEMPTS + [Outcome.SUCCESS]
        assert delivery.external_id == crm.records[delivery.idempotency_key]
        assert not delivery.possible_duplicate
    assert AuditLog.objects.filter(action="delivery.redriven").count() == CASES
    assert delivery_redrive(delivery_ids=ids, actor=supervisor) == 0
    assert crm.created == Counter(dict.fromkeys(keys, 1))
