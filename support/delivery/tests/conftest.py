"""A scripted target kind: each send plays the next scripted answer (a ``SendResult`` or an
exception) and records what was sent, so tests assert exactly what reached the target."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.delivery.models import Delivery
from support.delivery.registry import (
    DeliveryChange,
    Schedule,
    SendResult,
    TargetKind,
    target_kind_register,
    target_kind_unregister,
)

KIND = "test_target"


@dataclass
class ScriptedTarget:
    script: list[Any] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # idempotency keys, in order
    changes: list[tuple[str, str]] = field(default_factory=list)  # (key, event)
    during_send: Callable[[Delivery], None] | None = None
    deduplicates: bool = False
    max_attempts: int = 3
    delays: tuple[float, ...] = (10.0, 20.0)

    def send(self, delivery: Delivery) -> SendResult:
        self.sent.append(delivery.idempotency_key)
        if self.during_send is not None:
            self.during_send(delivery)
        answer = self.script.pop(0) if self.script else SendResult(http_status=200)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def on_change(self, delivery: Delivery, change: DeliveryChange) -> None:
        self.changes.append((delivery.idempotency_key, change.event))

    def kind(self) -> TargetKind:
        return TargetKind(
            name=KIND,
            send=self.send,
            schedule=lambda: Schedule(
                max_attempts=self.max_attempts, delays=self.delays, jitter=False
            ),
            on_change=self.on_change,
            deduplicates=lambda delivery: self.deduplicates,
        )


@pytest.fixture
def target() -> Iterator[ScriptedTarget]:
    scripted = ScriptedTarget()
    target_kind_register(scripted.kind())
    yield scripted
    target_kind_unregister(KIND)


def enqueue(key: str = "k-1", target_key: str = "host-a", **extra: Any) -> Delivery:
    from support.delivery.services import delivery_enqueue

    return delivery_enqueue(
        kind=KIND, idempotency_key=key, target_key=target_key, payload={"n": key}, **extra
    )
