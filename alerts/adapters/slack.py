"""Slack incoming webhooks: one POST of ``{"text": ...}`` to the target's webhook URL (held
encrypted in ``AlertTarget.secret``; the URL is the credential, so it is never logged)."""

from __future__ import annotations

from typing import Any

from alerts.adapters import AlertMessage
from alerts.adapters.http import post_json
from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult


def slack_text(message: AlertMessage) -> str:
    text = f"*{message.headline}*\n{message.summary}"
    if message.url:
        text += f"\n<{message.url}|Open the alert>"
    return text


def slack_send(target: Any, message: AlertMessage) -> SendResult:
    url = str(target.secret or "")
    if not url:
        raise DeliveryError(
            "The Slack target has no webhook URL.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    return post_json(
        url=url,
        body={"text": slack_text(message)},
        summary={"target": target.pk, "action": message.action},
    )
