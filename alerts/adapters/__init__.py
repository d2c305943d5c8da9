"""Notification adapters: one module per target kind, each ``send(target, message) ->
SendResult`` behind :class:`NotifyAdapter`. Only these modules talk to the outside (SMTP,
Slack, PagerDuty, SNS), each with an explicit timeout, and each maps failures to the
delivery engine's outcomes (retryable: timeouts, 5xx, 429; permanent: other 4xx, bad
configuration)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from support.delivery.registry import SendResult


@dataclass(frozen=True)
class AlertMessage:
    """What one notification says (a snapshot taken when it was enqueued)."""

    action: str  # trigger | acknowledge | resolve (PagerDuty's event_action)
    alert_id: int
    title: str
    summary: str
    severity: str
    state: str
    url: str
    dedup_key: str
    actor: str = ""
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> AlertMessage:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def headline(self) -> str:
        verb = {"trigger": "FIRING", "acknowledge": "ACKNOWLEDGED", "resolve": "RESOLVED"}
        who = f" by {self.actor}" if self.actor and self.action != "trigger" else ""
        return f"[{verb.get(self.action, self.action)}{who}] [{self.severity}] {self.title}"


class NotifyAdapter(Protocol):
    def __call__(self, target: Any, message: AlertMessage) -> SendResult: ...
