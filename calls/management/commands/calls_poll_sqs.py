"""Long-poll an SQS queue (SNS notifications, S3 events, Connect records) into intake.

Messages are deleted only after they were recorded and processed; failures stay on the
queue, so its redrive policy moves them to the dead-letter queue.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from calls import services
from support.errors import InvalidInput

logger = logging.getLogger(__name__)


def poll_once(client: Any, queue_url: str, *, wait: int = 10, batch: int = 10) -> tuple[int, int]:
    """One receive; answers (deleted, left on the queue)."""
    response = client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=batch, WaitTimeSeconds=wait
    )
    done = left = 0
    for message in response.get("Messages", []):
        try:
            result = services.call_events_intake(body=message["Body"].encode(), schedule=False)
            for event_id in result.accepted:
                status = services.call_event_process(event_id=event_id)
                if status == "failed":
                    raise InvalidInput(f"Event {event_id} failed to process.")
        except InvalidInput as exc:
            # Bad or refused (e.g. an S3 location outside CALLS_ALLOWED_S3_BUCKETS): left
            # for the queue's redrive policy to move to the dead-letter queue.
            logger.warning("SQS message %s refused: %s", message.get("MessageId"), exc)
            left += 1
            continue
        except Exception:
            logger.exception("SQS message %s failed", message.get("MessageId"))
            left += 1
            continue
        client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        done += 1
    return done, left


class Command(BaseCommand):
    help = "Poll an SQS queue (name or URL) into call intake."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("queue", help="Queue name or URL.")
        parser.add_argument("--once", action="store_true", help="One receive, then exit.")
        parser.add_argument("--wait", type=int, default=10, help="Long-poll seconds (≤20).")

    def handle(self, *args: Any, **options: Any) -> None:
        import boto3

        client = boto3.client("sqs", region_name=settings.AWS_REGION)
        queue = str(options["queue"])
        url = (
            queue
            if queue.startswith("https://") or queue.startswith("http://")
            else (client.get_queue_url(QueueName=queue)["QueueUrl"])
        )
        while True:
            done, left = poll_once(client, url, wait=min(20, int(options["wait"])))
            if done or left:
                self.stdout.write(f"processed {done}, left {left} on the queue")
            if options["once"]:
                return
