"""``kb_sqs_poll [--queue-url URL] [--once]``: read S3 object events from SQS.

Each message body is an S3 notification, an EventBridge S3 event or an SNS envelope of
either. Events are recorded (once each) and queued; the message is deleted only after that,
so a crash redelivers it and the unique event key makes the redelivery a no-op. A malformed
message is logged and left for the queue's redrive policy (dead-letter queue).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.s3events import parse_events
from knowledge.services import object_events_intake
from support.errors import InvalidInput

logger = logging.getLogger(__name__)


def sqs_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        region_name=settings.KB_AWS_REGION or None,
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
    )


def poll_once(client: Any, queue_url: str, *, wait_seconds: int = 20) -> tuple[int, int]:
    """Handle one batch; returns (messages handled, new events)."""
    response = client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
    )
    handled = new = 0
    for message in response.get("Messages", []):
        try:
            events = parse_events(message["Body"])
        except InvalidInput as exc:
            logger.warning("kb sqs: malformed message %s: %s", message.get("MessageId"), exc)
            continue
        new += len(object_events_intake(events, via="sqs"))
        client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        handled += 1
    return handled, new


class Command(BaseCommand):
    help = "Poll SQS for S3 object events and ingest or delete exactly those objects."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue-url", default="")
        parser.add_argument("--once", action="store_true", help="one receive, then exit")
        parser.add_argument("--wait", type=int, default=20, help="long-poll seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        queue_url = options["queue_url"] or settings.KB_SQS_QUEUE_URL
        if not queue_url:
            raise CommandError("--queue-url or KB_SQS_QUEUE_URL is required")
        client = sqs_client()
        while True:
            handled, new = poll_once(client, queue_url, wait_seconds=options["wait"])
            if handled or options["once"]:
                self.stdout.write(f"messages={handled} new_events={new}")
            if options["once"]:
                return
