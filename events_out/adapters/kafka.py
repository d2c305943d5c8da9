"""Kafka (seed 001's topics): one record per event, key = the ticket id, value = the event
envelope as JSON, headers ``event_id`` and ``event_type``.

Only this module talks to Kafka, with the maintained pure-Python client ``kafka-python``.
One producer per process and configuration (rebuilt in a forked child), ``acks=all``, every
timeout explicit (``EVENTS_KAFKA_TIMEOUT``); the producer's own retries stay within that
bound and the delivery engine does the rest. Failures map to the project's two kinds:
retryable (timeouts, broker unavailable, anything the client marks ``retriable``, socket
errors), credentials refused (SASL or authorization failures; they pause the target), and
permanent (a record too large, an invalid topic, any other broker answer).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from django.conf import settings
from kafka import KafkaProducer
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
)

from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError

_lock = threading.Lock()
_producers: dict[tuple[Any, ...], Any] = {}
_pid = os.getpid()


def _config() -> dict[str, Any]:
    timeout_ms = int(float(settings.EVENTS_KAFKA_TIMEOUT) * 1000)
    config: dict[str, Any] = {
        "bootstrap_servers": list(settings.EVENTS_KAFKA_BOOTSTRAP_SERVERS),
        "client_id": "support-desk",
        "acks": "all",
        "linger_ms": 0,
        "request_timeout_ms": timeout_ms,
        "delivery_timeout_ms": timeout_ms + 1000,
        "max_block_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
        "security_protocol": settings.EVENTS_KAFKA_SECURITY_PROTOCOL,
    }
    if settings.EVENTS_KAFKA_SASL_MECHANISM:
        config.update(
            sasl_mechanism=settings.EVENTS_KAFKA_SASL_MECHANISM,
            sasl_plain_username=settings.EVENTS_KAFKA_SASL_USERNAME,
            sasl_plain_password=settings.EVENTS_KAFKA_SASL_PASSWORD,
        )
    return config


def _producer() -> Any:
    global _pid
    config = _config()
    key = tuple(sorted((k, str(v)) for k, v in config.items()))
    with _lock:
        if _pid != os.getpid():  # a forked worker must not share its parent's sockets
            _producers.clear()
            _pid = os.getpid()
        producer = _producers.get(key)
        if producer is None:
            producer = _producers[key] = KafkaProducer(**config)
        return producer


def kafka_producers_close() -> None:
    """Close and forget every producer (tests; after changing credentials)."""
    with _lock:
        for producer in _producers.values():
            producer.close(timeout=5)
        _producers.clear()


def _error(exc: Exception) -> DeliveryError:
    text = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, SaslAuthenticationFailedError | AuthorizationError):
        return DeliveryError(text, outcome=Outcome.AUTH, error_code="kafka_auth")
    if isinstance(exc, KafkaTimeoutError | OSError) or getattr(exc, "retriable", False):
        return DeliveryError(text, outcome=Outcome.RETRYABLE, error_code="kafka_unavailable")
    return DeliveryError(text, outcome=Outcome.PERMANENT, error_code="kafka_refused")


def kafka_produce(*, topic: str, key: str, value: dict[str, Any], headers: dict[str, str]) -> str:
    """Send one record and wait for the brokers' acknowledgement; returns
    ``topic/partition/offset`` or raises a classified ``DeliveryError``."""
    try:
        producer = _producer()
        future = producer.send(
            topic,
            key=key.encode(),
            value=json.dumps(value, separators=(",", ":"), default=str).encode(),
            headers=[(name, item.encode()) for name, item in headers.items()],
        )
        metadata = future.get(timeout=float(settings.EVENTS_KAFKA_TIMEOUT) + 2)
    except (KafkaError, OSError) as exc:  # the producer reconnects by itself
        raise _error(exc) from exc
    return f"{metadata.topic}/{metadata.partition}/{metadata.offset}"
