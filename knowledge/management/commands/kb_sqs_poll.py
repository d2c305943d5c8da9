"""``kb_sqs_poll [--queue-url URL] [--once]``: read S3 object events from SQS.

Each message body is an S3 notification, an EventBridge S3 event or an SNS envelope of
either. Events are recorded (once each) and queued; the message is deleted only after that,
so a crash redelivers it and the unique event key makes the redelivery a no-op. A malformed
message, or one whose handling fails in any other way (the database gone, a poison
message), is logged with its id and left for the queue's redrive policy (dead-letter
queue), and the rest of the batch is handled. SQS itself failing (``support.aws``):
throttled or retryable errors back off and poll again; a permanent or auth error stops
the command with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.s3events import parse_events
from knowledge.services import object_events_intake
from support.aws import aws_client, poll_forever, sqs_receive_each
from support.errors import InvalidInput, PermanentError, RetryableError

logger = logging.getLogger(__name__)


def sqs_client(*, wait_seconds: int = 20) -> Any:
    # The long poll holds the request open for `wait_seconds`: read longer than that.
    return aws_client(
        "sqs",
        region=settings.KB_AWS_REGION or None,
        read_timeout=max(settings.AWS_READ_TIMEOUT, wait_seconds + 10),
    )


def poll_once(client: Any, queue_url: str, *, wait_seconds: int = 20) -> tuple[int, int]:
    """Handle one batch; returns (messages handled, new events)."""
    new = 0

    def handle(message: dict[str, Any]) -> bool:
        nonlocal new
        try:
            events = parse_events(message["Body"])
            new += len(object_events_intake(events, via="sqs"))
        except InvalidInput as exc:
            logger.warning("kb sqs: malformed message %s: %s", message.get("MessageId"), exc)
            return False
        except Exception:
            # Any other failure (the database gone, a poison message) is this message's:
            # it stays on the queue (redelivered, then the dead-letter queue) and the rest
            # of the batch goes on, as in calls_poll_sqs.
            logger.exception("kb sqs: message %s failed", message.get("MessageId"))
            return False
        return True

    handled, _ = sqs_receive_each(client, queue_url, handle, wait=wait_seconds)
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
        wait = max(0, min(20, int(options["wait"])))
        client = sqs_client(wait_seconds=wait)

        def poll() -> None:
            handled, new = poll_once(client, queue_url, wait_seconds=wait)
            if handled or options["once"]:
                self.stdout.write(f"messages={handled} new_events={new}")

        try:
            poll_forever(poll, once=bool(options["once"]), what="kb sqs poll")
        except (RetryableError, PermanentError) as exc:
            raise CommandError(str(exc)) from exc
