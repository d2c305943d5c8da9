"""Long-poll an SQS queue (SNS notifications, S3 events, Connect records) into intake.

Messages are deleted only after they were recorded and processed; failures stay on the
queue, so its redrive policy moves them to the dead-letter queue. SQS itself failing
(``support.aws``): throttled or retryable errors back off and poll again; a permanent or
auth error (no such queue, no permission) stops the command with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls import services
from support.aws import aws_client, aws_error, poll_forever, sqs_receive_each
from support.errors import InvalidInput, PermanentError, RetryableError

logger = logging.getLogger(__name__)


def poll_once(client: Any, queue_url: str, *, wait: int = 10, batch: int = 10) -> tuple[int, int]:
    """One receive; answers (deleted, left on the queue). SQS failures raise
    ``RetryableError`` / ``PermanentError``."""

    def handle(message: dict[str, Any]) -> bool:
        try:
            result = services.call_events_intake(body=message["Body"].encode(), schedule=False)
            # Also events a previous delivery recorded but did not finish applying.
            for event_id in result.to_process():
                status = services.call_event_process(event_id=event_id)
                if status == "failed":
                    raise InvalidInput(f"Event {event_id} failed to process.")
        except InvalidInput as exc:
            # Bad or refused (e.g. an S3 location outside CALLS_ALLOWED_S3_BUCKETS): left
            # for the queue's redrive policy to move to the dead-letter queue.
            logger.warning("SQS message %s refused: %s", message.get("MessageId"), exc)
            return False
        except Exception:
            logger.exception("SQS message %s failed", message.get("MessageId"))
            return False
        return True

    return sqs_receive_each(client, queue_url, handle, wait=wait, batch=batch)


class Command(BaseCommand):
    help = "Poll an SQS queue (name or URL) into call intake."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("queue", help="Queue name or URL.")
        parser.add_argument("--once", action="store_true", help="One receive, then exit.")
        parser.add_argument("--wait", type=int, default=10, help="Long-poll seconds (≤20).")

    def handle(self, *args: Any, **options: Any) -> None:
        wait = max(0, min(20, int(options["wait"])))
        # The long poll holds the request open for `wait` seconds: read longer than that.
        client = aws_client("sqs", read_timeout=max(settings.AWS_READ_TIMEOUT, wait + 10))
        queue = str(options["queue"])
        try:
            url = (
                queue
                if queue.startswith("https://") or queue.startswith("http://")
                else (client.get_queue_url(QueueName=queue)["QueueUrl"])
            )
        except (ClientError, BotoCoreError) as exc:
            raise CommandError(str(aws_error(exc, context=f"SQS queue {queue}"))) from exc

        def poll() -> None:
            done, left = poll_once(client, url, wait=wait)
            if done or left:
                self.stdout.write(f"processed {done}, left {left} on the queue")

        try:
            poll_forever(poll, once=bool(options["once"]), what="SQS poll")
        except (RetryableError, PermanentError) as exc:
            raise CommandError(str(exc)) from exc
