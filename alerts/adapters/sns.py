"""Amazon SNS: one ``Publish`` to the target's topic, through ``support.aws.aws_client``
(explicit timeouts, bounded botocore retries); failures become retryable / permanent
through ``support.aws.aws_error`` (throttling and 5xx retryable, other 4xx permanent,
refused credentials auth)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from alerts.adapters import AlertMessage
from support.aws import aws_client, aws_error
from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult


def sns_subject(message: AlertMessage) -> str:
    """SNS subjects: ASCII, no line breaks, under 100 characters."""
    text = message.headline.encode("ascii", "replace").decode()
    return " ".join(text.split())[:99]


def sns_send(target: Any, message: AlertMessage, *, client: Any = None) -> SendResult:
    if not target.topic_arn:
        raise DeliveryError(
            "The SNS target has no topic ARN.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    timeout = float(settings.ALERTS_HTTP_TIMEOUT)
    sns = client or aws_client(
        "sns", region=target.region or None, connect_timeout=timeout, read_timeout=timeout
    )
    try:
        response = sns.publish(
            TopicArn=target.topic_arn,
            Subject=sns_subject(message),
            Message=json.dumps(message.as_payload(), default=str),
            MessageAttributes={
                "severity": {"DataType": "String", "StringValue": message.severity},
                "action": {"DataType": "String", "StringValue": message.action},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="SNS Publish") from exc
    return SendResult(
        external_id=str(response.get("MessageId") or ""),
        request_summary={"topic": target.topic_arn, "action": message.action},
    )
